use broadcast_core::Room;
use broadcast_core::join::JoinContext;

#[derive(Room)]
#[room(public, authorize = can_join)]
struct ChatRoom(u64);

async fn can_join(_: &JoinContext, _: &ChatRoom) -> bool {
    true
}

fn main() {}
