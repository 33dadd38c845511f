//! Duration and boolean flags, in kamaji-rs's and Kamaji's (Go) syntax. Any panic is a bug; the body is `kamaji_fuzz::flags`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kamaji_fuzz::flags(data));
