//! Benchmarks for the PKI core (filled in below).
fn main() {}
