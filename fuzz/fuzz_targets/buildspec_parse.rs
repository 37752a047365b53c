//! Feeds arbitrary bytes to the buildspec parser: it must return (Ok or
//! diagnostics) without panicking, overflowing the stack or hanging.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(source) = std::str::from_utf8(data) {
        if let Err(diags) = gantry_spec::buildspec::parse(source) {
            // Every diagnostic must point inside the file.
            for d in &diags {
                assert!(d.span.line >= 1 && d.span.col >= 1, "{d:?}");
                assert!(d.span.offset + d.span.len <= source.len(), "{d:?}");
                assert!(source.is_char_boundary(d.span.offset), "{d:?}");
            }
            assert!(!diags.is_empty());
        }
    }
});
