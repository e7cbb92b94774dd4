use broadcast_core::BroadcastEvent;

// Three mistakes, three messages, each at its own attribute.
#[derive(serde::Serialize, BroadcastEvent)]
#[broadcast(to = "chat", name = "", namespace = "nope")]
#[broadcast(on = "chat|{missing}")]
struct UpdateChat {
    chat_id: u64,
}

fn main() {}
