use broadcast_core::Room;

// Rooms are private by default: without `public` or `authorize`, nobody
// could ever join, which is surely not what was meant.
#[derive(Room)]
#[room(key = "chat")]
struct ChatRoom(u64);

#[derive(Room)]
struct UserRoom {
    user_id: String,
}

fn main() {}
