//! Private keys: the algorithms kubeadm offers (`encryptionAlgorithm`), generation
//! through rcgen's aws-lc-rs backend, and the PEM encodings the control plane reads.
//!
//! Generated keys are written as PKCS#8 (`PRIVATE KEY`), which kube-apiserver,
//! etcd, kubectl and client-go all accept for every algorithm. Loaded keys keep
//! the encoding they came in (kubeadm writes PKCS#1 `RSA PRIVATE KEY` and SEC1
//! `EC PRIVATE KEY`), so re-publishing an adopted CA does not rewrite its key.

use std::{fmt, str::FromStr};

use rcgen::{
    KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256, PublicKeyData, RsaKeySize,
};
use rustls_pki_types::{PrivateKeyDer, pem::SectionKind};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::pem::{self, PemProblem};

/// A key algorithm, named as kubeadm's `ClusterConfiguration.encryptionAlgorithm`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyAlgorithm {
    /// `RSA-2048`, kubeadm's default.
    #[default]
    Rsa2048,
    /// `RSA-3072`.
    Rsa3072,
    /// `RSA-4096`.
    Rsa4096,
    /// `ECDSA-P256`.
    EcdsaP256,
    /// `ECDSA-P384` (kubeadm 1.34+).
    EcdsaP384,
}

impl KeyAlgorithm {
    /// Every algorithm, in kubeadm's documentation order.
    pub const ALL: [KeyAlgorithm; 5] = [
        Self::Rsa2048,
        Self::Rsa3072,
        Self::Rsa4096,
        Self::EcdsaP256,
        Self::EcdsaP384,
    ];

    /// kubeadm's name for the algorithm.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rsa2048 => "RSA-2048",
            Self::Rsa3072 => "RSA-3072",
            Self::Rsa4096 => "RSA-4096",
            Self::EcdsaP256 => "ECDSA-P256",
            Self::EcdsaP384 => "ECDSA-P384",
        }
    }

    /// Whether keys of this algorithm are RSA keys (which also get `keyEncipherment`).
    pub const fn is_rsa(self) -> bool {
        matches!(self, Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096)
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = KeyError;

    /// Parses kubeadm's names; case does not matter (`rsa-2048` is accepted).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| KeyError::UnknownAlgorithm(s.chars().take(64).collect()))
    }
}

impl Serialize for KeyAlgorithm {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for KeyAlgorithm {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What went wrong with a key. Never contains key material.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The algorithm name is not one of kubeadm's.
    #[error(
        "unknown key algorithm {0:?}: expected one of RSA-2048, RSA-3072, RSA-4096, ECDSA-P256, ECDSA-P384"
    )]
    UnknownAlgorithm(String),
    /// The crypto backend failed to generate a key.
    #[error("generating a {0} key failed")]
    Generation(KeyAlgorithm),
    /// The value is empty.
    #[error("the private key is empty")]
    Empty,
    /// The value holds no PEM block at all.
    #[error("no PEM block found where a private key was expected")]
    NoPemBlock,
    /// A PEM block is present but broken.
    #[error("malformed private key PEM: {0}")]
    MalformedPem(&'static str),
    /// The PEM blocks present are not private keys.
    #[error("expected a PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block, found {0}")]
    NotAPrivateKey(String),
    /// The PEM blocks present are not a public key.
    #[error("expected a PUBLIC KEY block, found {0}")]
    NotAPublicKey(String),
    /// The block decodes, but the key is invalid or of an unsupported type.
    #[error("the private key is invalid or of an unsupported type (supported: RSA, ECDSA P-256/P-384)")]
    Unsupported,
}

impl From<PemProblem> for KeyError {
    fn from(problem: PemProblem) -> Self {
        match problem {
            PemProblem::Empty => Self::Empty,
            PemProblem::NoBlock => Self::NoPemBlock,
            PemProblem::Malformed(reason) => Self::MalformedPem(reason),
            PemProblem::WrongType(found) => Self::NotAPrivateKey(found),
        }
    }
}

/// A private key with its PEM encoding. `Debug` never shows the key.
pub struct PrivateKey {
    pair: KeyPair,
    pem: String,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey").field("pem", &"[elided]").finish()
    }
}

impl PrivateKey {
    /// A new key: from the process-wide [`super::pool`] when one is installed for
    /// this algorithm and not empty, else generated now (RSA generation takes tens
    /// of milliseconds; call it off the async runtime).
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, KeyError> {
        match super::pool::take(algorithm) {
            Some(key) => Ok(key),
            None => Self::generate_fresh(algorithm),
        }
    }

    /// Generates a key now, bypassing the pool.
    pub fn generate_fresh(algorithm: KeyAlgorithm) -> Result<Self, KeyError> {
        let pair = match algorithm {
            KeyAlgorithm::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048),
            KeyAlgorithm::Rsa3072 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_3072),
            KeyAlgorithm::Rsa4096 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_4096),
            KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
            KeyAlgorithm::EcdsaP384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
        }
        .map_err(|_| KeyError::Generation(algorithm))?;
        // rcgen serialises generated keys as PKCS#8 for every algorithm.
        let pem = pair.serialize_pem();
        Ok(Self { pair, pem })
    }

    /// Loads a key from PEM: PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or SEC1
    /// `EC PRIVATE KEY`. The original encoding is kept for [`PrivateKey::pem`].
    pub fn from_pem(bytes: &[u8]) -> Result<Self, KeyError> {
        let (kind, der) = pem::private_key(bytes)?;
        let key_der = match kind {
            SectionKind::PrivateKey => PrivateKeyDer::Pkcs8(der.into()),
            SectionKind::RsaPrivateKey => PrivateKeyDer::Pkcs1(der.into()),
            _ => PrivateKeyDer::Sec1(der.into()),
        };
        let pair = KeyPair::try_from(&key_der).map_err(|_| KeyError::Unsupported)?;
        // Only the block we parsed is kept, not whatever else the value held.
        let pem = pem::encode(pem::label(kind), key_der.secret_der());
        Ok(Self { pair, pem })
    }

    /// The key as PEM (PKCS#8 for generated keys, the original encoding for loaded ones).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The public half as a `PUBLIC KEY` (SubjectPublicKeyInfo) PEM block, as `sa.pub`.
    pub fn public_key_pem(&self) -> String {
        self.pair.public_key_pem()
    }

    /// The raw public key (the content of the SubjectPublicKeyInfo bit string): what a
    /// certificate carries for this key.
    pub fn public_key_raw(&self) -> &[u8] {
        self.pair.der_bytes()
    }

    /// The algorithm of this key, when it is one of kubeadm's.
    pub fn algorithm(&self) -> Option<KeyAlgorithm> {
        let alg = self.pair.algorithm();
        if alg == &PKCS_ECDSA_P256_SHA256 {
            Some(KeyAlgorithm::EcdsaP256)
        } else if alg == &PKCS_ECDSA_P384_SHA384 {
            Some(KeyAlgorithm::EcdsaP384)
        } else if alg == &PKCS_RSA_SHA256 {
            // The modulus length of an RSAPublicKey is close to the key size in bytes.
            match self.pair.der_bytes().len() {
                0..=300 => Some(KeyAlgorithm::Rsa2048),
                301..=430 => Some(KeyAlgorithm::Rsa3072),
                _ => Some(KeyAlgorithm::Rsa4096),
            }
        } else {
            None
        }
    }

    /// Whether `raw_public_key` (from a certificate's SubjectPublicKeyInfo) is this key's.
    pub fn matches_public_key(&self, raw_public_key: &[u8]) -> bool {
        self.public_key_raw() == raw_public_key
    }

    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.pair
    }
}

/// The raw public key inside a `PUBLIC KEY` PEM block (for checking `sa.pub` against `sa.key`).
pub fn public_key_raw_from_pem(bytes: &[u8]) -> Result<Vec<u8>, KeyError> {
    use x509_parser::prelude::FromDer;
    let der = pem::public_key(bytes).map_err(|p| match p {
        PemProblem::WrongType(found) => KeyError::NotAPublicKey(found),
        other => other.into(),
    })?;
    let (_, spki) =
        x509_parser::x509::SubjectPublicKeyInfo::from_der(&der).map_err(|_| KeyError::Unsupported)?;
    Ok(spki.subject_public_key.data.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_as_kubeadm_spells_them() {
        for alg in KeyAlgorithm::ALL {
            assert_eq!(alg.to_string().parse::<KeyAlgorithm>().unwrap(), alg);
        }
        assert_eq!(
            "ecdsa-p256".parse::<KeyAlgorithm>().unwrap(),
            KeyAlgorithm::EcdsaP256
        );
        assert_eq!(KeyAlgorithm::default().as_str(), "RSA-2048");
        let err = "RSA-1024".parse::<KeyAlgorithm>().unwrap_err();
        assert!(err.to_string().contains("RSA-1024"));
    }

    #[test]
    fn serde_uses_kubeadm_names() {
        let json = serde_json::to_string(&KeyAlgorithm::EcdsaP384).unwrap();
        assert_eq!(json, "\"ECDSA-P384\"");
        let back: KeyAlgorithm = serde_json::from_str("\"RSA-4096\"").unwrap();
        assert_eq!(back, KeyAlgorithm::Rsa4096);
    }

    #[test]
    fn generated_keys_are_pkcs8_and_reload() {
        for alg in [
            KeyAlgorithm::Rsa2048,
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
        ] {
            let key = PrivateKey::generate(alg).unwrap();
            assert!(key.pem().starts_with("-----BEGIN PRIVATE KEY-----\n"), "{alg}");
            assert_eq!(key.algorithm(), Some(alg));
            let again = PrivateKey::from_pem(key.pem().as_bytes()).unwrap();
            assert_eq!(again.public_key_raw(), key.public_key_raw());
            assert_eq!(again.pem(), key.pem());
            let public = public_key_raw_from_pem(key.public_key_pem().as_bytes()).unwrap();
            assert!(key.matches_public_key(&public));
        }
    }

    #[test]
    fn large_rsa_keys_have_their_size() {
        for alg in [KeyAlgorithm::Rsa3072, KeyAlgorithm::Rsa4096] {
            assert_eq!(PrivateKey::generate(alg).unwrap().algorithm(), Some(alg));
        }
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let debug = format!("{key:?}");
        assert!(!debug.contains("BEGIN"));
    }

    #[test]
    fn certificate_is_not_a_private_key() {
        let pem = super::pem::encode("CERTIFICATE", b"\x30\x00");
        assert_eq!(
            PrivateKey::from_pem(pem.as_bytes()).unwrap_err(),
            KeyError::NotAPrivateKey("CERTIFICATE".into())
        );
        assert_eq!(PrivateKey::from_pem(b"").unwrap_err(), KeyError::Empty);
        let junk = super::pem::encode("PRIVATE KEY", b"not a key");
        assert_eq!(
            PrivateKey::from_pem(junk.as_bytes()).unwrap_err(),
            KeyError::Unsupported
        );
    }
}
