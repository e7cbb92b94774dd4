use broadcast_core::Room;

// The identifier goes into the room name, so every field must be Display
// (and Deserialize, to parse it from a client's join).
#[derive(Room)]
#[room(public)]
struct TagsRoom {
    tags: Vec<String>,
}

fn main() {}
