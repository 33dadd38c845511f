//! A kubeconfig (YAML or JSON) and what is read from it: credentials, CA, server. Any panic is a bug; the body is `kamaji_fuzz::kubeconfig`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kamaji_fuzz::kubeconfig(data));
