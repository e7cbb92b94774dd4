use broadcast_core::Room;

#[derive(Room)]
#[room(public, history(size = 0, ttl = "ten minutes", depth = 3))]
struct ChatRoom(u64);

#[derive(Room)]
#[room(public, history = 100)]
struct Lobby;

fn main() {}
