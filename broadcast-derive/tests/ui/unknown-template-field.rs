use broadcast_core::BroadcastEvent;

#[derive(serde::Serialize, BroadcastEvent)]
#[broadcast(on = "chat|{chat_idd}")]
struct UpdateChat {
    chat_id: u64,
}

fn main() {}
