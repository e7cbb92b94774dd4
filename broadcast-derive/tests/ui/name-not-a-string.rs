use broadcast_core::BroadcastEvent;

#[derive(serde::Serialize, BroadcastEvent)]
#[broadcast(name = chat_updated)]
struct UpdateChat {
    chat_id: u64,
}

fn main() {}
