//! The value of certs.kamaji.clastix.io/rotate. Any panic is a bug; the body is `kamaji_fuzz::rotate_annotation`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kamaji_fuzz::rotate_annotation(data));
