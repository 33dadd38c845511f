//! spec.kubernetes.kubelet.configurationJSONPatches applied to the KubeletConfiguration. Any panic is a bug; the body is `kamaji_fuzz::kubelet_patches`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kamaji_fuzz::kubelet_patches(data));
