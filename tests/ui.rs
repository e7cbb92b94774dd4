//! Compile-fail tests: each misuse of the derives gives one clear message at
//! the offending attribute (`tests/ui/*.rs` with their `.stderr`).
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
