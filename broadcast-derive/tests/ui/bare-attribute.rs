use broadcast_core::BroadcastEvent;

#[derive(serde::Serialize, BroadcastEvent)]
#[broadcast]
struct UpdateChat {
    chat_id: u64,
}

fn main() {}
