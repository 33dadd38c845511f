//! `crds/` is what users and the Helm chart install: it must be exactly what
//! `kamaji crd` generates from the Rust types.

#[test]
fn checked_in_crds_match_kamaji_crd_output() {
    let generated = kamaji::api::crds_yaml().expect("CRDs serialize to YAML");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/kamaji.clastix.io.yaml");
    let checked_in = std::fs::read_to_string(path).expect("crds/kamaji.clastix.io.yaml exists");
    assert!(
        generated == checked_in,
        "crds/kamaji.clastix.io.yaml is stale: run `cargo run -- crd > crds/kamaji.clastix.io.yaml`"
    );
}
