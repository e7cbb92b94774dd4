use broadcast_core::BroadcastEvent;

// Without `as`, the event itself is the payload, so it must be Serialize.
#[derive(BroadcastEvent)]
#[broadcast(on = "chat|{chat_id}")]
struct UpdateChat {
    chat_id: u64,
}

fn main() {}
