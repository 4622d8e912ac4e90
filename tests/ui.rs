//! Compile-time diagnostics of the attribute macros (one file per diagnostic).

#[test]
fn macro_diagnostics() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/main_ok.rs");
    t.compile_fail("tests/ui/main_async.rs");
    t.compile_fail("tests/ui/main_with_args.rs");
}
