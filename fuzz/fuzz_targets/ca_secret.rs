//! A CA Secret of each authority: signing CA and key, previous CA, cross-signed certificate. Any panic is a bug; the body is `kamaji_fuzz::ca_secret`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kamaji_fuzz::ca_secret(data));
