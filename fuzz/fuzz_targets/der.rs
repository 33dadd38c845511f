//! Raw DER certificates and keys, wrapped in each PEM label kamaji-rs reads. Any panic is a bug; the body is `kamaji_fuzz::der`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kamaji_fuzz::der(data));
