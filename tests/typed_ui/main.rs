//! Compile-fail tests of `#[rpcnet::service]`: misuse is reported at the
//! item as written, with a message saying what to write instead. The
//! expected compiler output is in `fail/*.stderr` (regenerate with
//! `TRYBUILD=overwrite cargo test --test typed_ui` after checking it).

#[test]
fn misuse_is_reported_where_it_is_written() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/typed_ui/fail/*.rs");
}
