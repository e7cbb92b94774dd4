use broadcast_core::BroadcastEvent;

#[derive(serde::Serialize, BroadcastEvent)]
enum ChatEvent {
    Created { id: u64 },
    Deleted { id: u64 },
}

fn main() {}
