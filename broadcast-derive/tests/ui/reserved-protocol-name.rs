use broadcast_core::BroadcastEvent;

// The join protocol answers joins with `joined`: clients could not tell
// this event from an answer.
#[derive(serde::Serialize, BroadcastEvent)]
#[broadcast(name = "joined")]
struct MemberJoined {
    user_id: u64,
}

fn main() {}
