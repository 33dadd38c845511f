//! Secret data of both lifecycles: PEM certificates and keys, kubeconfigs and their embedded credentials, CA and private-key loading. Any panic is a bug; the body is `kamaji_fuzz::secret_values`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kamaji_fuzz::secret_values(data));
