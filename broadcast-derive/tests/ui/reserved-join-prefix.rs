use broadcast_core::BroadcastEvent;

// The default name `join_chat` is the event a client sends to join the
// `chat` room.
#[derive(serde::Serialize, BroadcastEvent)]
struct JoinChat {
    chat_id: u64,
}

fn main() {}
