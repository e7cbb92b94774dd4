use broadcast_core::Room;

#[derive(Room)]
#[room(public, namespce = "/chat")]
struct ChatRoom(u64);

fn main() {}
