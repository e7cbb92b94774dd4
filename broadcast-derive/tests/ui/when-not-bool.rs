use broadcast_core::BroadcastEvent;

#[derive(serde::Serialize, BroadcastEvent)]
#[broadcast(on = "lobby", when = Self::visible)]
struct Announcement {
    text: String,
}

impl Announcement {
    fn visible(&self) -> &'static str {
        "yes"
    }
}

fn main() {}
