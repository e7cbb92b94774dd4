use broadcast_core::BroadcastEvent;

#[derive(serde::Serialize, BroadcastEvent)]
#[broadcast(onn = "chat|{id}")]
struct UpdateChat {
    id: u64,
}

fn main() {}
