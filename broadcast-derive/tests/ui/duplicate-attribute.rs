use broadcast_core::BroadcastEvent;

#[derive(serde::Serialize, BroadcastEvent)]
#[broadcast(on = "chat|{id}")]
#[broadcast(on = "user|{id}")]
struct UpdateChat {
    id: u64,
}

fn main() {}
