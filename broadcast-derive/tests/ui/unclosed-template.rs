use broadcast_core::BroadcastEvent;

#[derive(serde::Serialize, BroadcastEvent)]
#[broadcast(on = "chat|{chat_id")]
struct UpdateChat {
    chat_id: u64,
}

fn main() {}
