use broadcast_core::Room;

#[derive(Room)]
#[room(public)]
enum ChatRoom {
    Direct(u64),
    Group(u64),
}

fn main() {}
