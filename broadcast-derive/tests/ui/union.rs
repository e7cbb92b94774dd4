use broadcast_core::BroadcastEvent;

#[derive(BroadcastEvent)]
union Bits {
    a: u32,
    b: f32,
}

fn main() {}
