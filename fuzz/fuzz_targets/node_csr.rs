//! An issued kubelet CSR in the tenant, observed during a CA rotation. Any panic is a bug; the body is `kamaji_fuzz::node_csr`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kamaji_fuzz::node_csr(data));
