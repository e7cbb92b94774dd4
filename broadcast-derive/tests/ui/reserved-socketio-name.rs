use broadcast_core::BroadcastEvent;

// Socket.IO gives `disconnect` a meaning of its own: clients would never
// see this event as one.
#[derive(serde::Serialize, BroadcastEvent)]
#[broadcast(name = "disconnect")]
struct UserLeft {
    user_id: u64,
}

fn main() {}
