//! Compile-time diagnostics of the attribute macros and of process targets (one file
//! per diagnostic).

#[test]
fn macro_diagnostics() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/main_ok.rs");
    t.compile_fail("tests/ui/main_async.rs");
    t.compile_fail("tests/ui/main_with_args.rs");

    t.pass("tests/ui/actor_ok.rs");
    t.compile_fail("tests/ui/actor_on_enum.rs");
    t.compile_fail("tests/ui/actor_on_union.rs");
    t.compile_fail("tests/ui/actor_without_serde.rs");
    t.compile_fail("tests/ui/actor_without_impl.rs");
    t.compile_fail("tests/ui/actor_generic_without_bounds.rs");
    t.compile_fail("tests/ui/actor_lifetime.rs");
    t.compile_fail("tests/ui/unknown_option.rs");
    t.compile_fail("tests/ui/unknown_mailbox.rs");
    t.compile_fail("tests/ui/repeated_option.rs");
    t.compile_fail("tests/ui/pipe_actor_without_reply.rs");
}

#[test]
fn target_diagnostics() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/target_ok.rs");
    t.compile_fail("tests/ui/target_tuple_too_long.rs");
    t.compile_fail("tests/ui/target_wrong_argument_type.rs");
    t.compile_fail("tests/ui/target_capturing_closure.rs");
    // each queue operation's error has only its own cases (issue 22; here rather than
    // in a test of its own, which would cost CI another trybuild pass)
    t.compile_fail("tests/ui/blocking_get_has_no_empty.rs");
    t.compile_fail("tests/ui/blocking_put_has_no_full.rs");
    t.compile_fail("tests/ui/target_capturing_copy_closure.rs");
    t.compile_fail("tests/ui/target_not_a_function.rs");
    t.compile_fail("tests/ui/target_pool_starmap_mismatch.rs");
}
