#[test]
fn ui_rooms() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/room-*.rs");
}
