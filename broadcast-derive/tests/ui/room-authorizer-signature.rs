use broadcast_core::Room;

#[derive(Room)]
#[room(authorize = can_join)]
struct ChatRoom(u64);

// An authorizer takes `(&JoinContext, &ChatRoom)`.
async fn can_join(room: &ChatRoom) -> bool {
    room.0 > 0
}

fn main() {}
