use broadcast_core::BroadcastEvent;

#[derive(serde::Serialize, BroadcastEvent)]
#[broadcast(on = "models")]
struct ModelUpdated<T> {
    model: T,
}

fn main() {}
