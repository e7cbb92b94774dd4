use broadcast_core::Room;

// Four mistakes, four messages, each at its own attribute.
#[derive(Room)]
#[room(key = "chat|room", namespace = "chat", public)]
#[room(public, authorize = |_, _| true)]
struct ChatRoom(u64);

fn main() {}
