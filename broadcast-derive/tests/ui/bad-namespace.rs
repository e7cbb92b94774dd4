use broadcast_core::BroadcastEvent;

#[derive(serde::Serialize, BroadcastEvent)]
#[broadcast(namespace = "admin")]
struct Audit {
    text: String,
}

#[derive(serde::Serialize, BroadcastEvent)]
#[broadcast(namespace = "/admin#ops")]
struct Audit2 {
    text: String,
}

fn main() {}
