//! Pure PKI: keys, authorities, the certificate catalog, kubeconfigs and inspection.
