//! Compile-fail tests: each misuse of the derives gives one clear message at
//! the offending attribute (`tests/ui/*.rs` with their `.stderr`), checked
//! against broadcast-core with the `derive` and `schema` features only.
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test -p broadcast-derive --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
