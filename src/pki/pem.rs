//! PEM reading and writing shared by the PKI modules.
//!
//! Reading goes through rustls-pki-types' PEM parser. Problems are reported as
//! [`PemProblem`] values that carry only fixed descriptions and block labels, never
//! any byte of the input, so callers can put them into errors and events safely.

use base64::Engine as _;
use rustls_pki_types::pem::{self, PemObject, SectionKind};

/// Why a value is not the PEM block a caller wanted. Never contains input bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PemProblem {
    /// The value is empty.
    Empty,
    /// No `-----BEGIN ...-----` line at all (binary junk, DER, plain text).
    NoBlock,
    /// A block is present but broken (truncated, bad base64, bad BEGIN line).
    Malformed(&'static str),
    /// Well-formed PEM, but none of the blocks has the wanted type; carries the
    /// label of the first block found.
    WrongType(String),
}

/// Every `CERTIFICATE` block in `bytes`, in order (a leaf first, then its chain).
pub(crate) fn certificates(bytes: &[u8]) -> Result<Vec<Vec<u8>>, PemProblem> {
    let sections = sections(bytes)?;
    let certs: Vec<Vec<u8>> = sections
        .iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| der.clone())
        .collect();
    if certs.is_empty() {
        return Err(wrong_type(bytes, &sections));
    }
    Ok(certs)
}

/// The first private key block (`PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`).
pub(crate) fn private_key(bytes: &[u8]) -> Result<(SectionKind, Vec<u8>), PemProblem> {
    let sections = sections(bytes)?;
    sections
        .iter()
        .find(|(kind, _)| {
            matches!(
                kind,
                SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
            )
        })
        .cloned()
        .ok_or_else(|| wrong_type(bytes, &sections))
}

/// The first `PUBLIC KEY` block (a DER SubjectPublicKeyInfo).
pub(crate) fn public_key(bytes: &[u8]) -> Result<Vec<u8>, PemProblem> {
    let sections = sections(bytes)?;
    sections
        .iter()
        .find(|(kind, _)| *kind == SectionKind::PublicKey)
        .map(|(_, der)| der.clone())
        .ok_or_else(|| wrong_type(bytes, &sections))
}

/// Every `PUBLIC KEY` block, in order (a service-account key bundle).
pub(crate) fn public_keys(bytes: &[u8]) -> Result<Vec<Vec<u8>>, PemProblem> {
    let sections = sections(bytes)?;
    let keys: Vec<Vec<u8>> = sections
        .iter()
        .filter(|(kind, _)| *kind == SectionKind::PublicKey)
        .map(|(_, der)| der.clone())
        .collect();
    if keys.is_empty() {
        return Err(wrong_type(bytes, &sections));
    }
    Ok(keys)
}

/// Encodes DER as a PEM block with 64-character lines and a trailing newline.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(body.len() + body.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in body.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk boundary is a char boundary.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// The label of a section kind as it appears in a BEGIN line.
pub(crate) fn label(kind: SectionKind) -> &'static str {
    match kind {
        SectionKind::Certificate => "CERTIFICATE",
        SectionKind::PublicKey => "PUBLIC KEY",
        SectionKind::RsaPrivateKey => "RSA PRIVATE KEY",
        SectionKind::PrivateKey => "PRIVATE KEY",
        SectionKind::EcPrivateKey => "EC PRIVATE KEY",
        SectionKind::Crl => "X509 CRL",
        SectionKind::Csr => "CERTIFICATE REQUEST",
        _ => "unknown",
    }
}

fn sections(bytes: &[u8]) -> Result<Vec<(SectionKind, Vec<u8>)>, PemProblem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(PemProblem::Empty);
    }
    let mut out = Vec::new();
    for section in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(bytes) {
        match section {
            Ok(section) => out.push(section),
            Err(err) => return Err(PemProblem::Malformed(describe(&err))),
        }
    }
    if out.is_empty() && first_begin_label(bytes).is_none() {
        return Err(PemProblem::NoBlock);
    }
    Ok(out)
}

fn wrong_type(bytes: &[u8], sections: &[(SectionKind, Vec<u8>)]) -> PemProblem {
    match sections.first() {
        Some((kind, _)) => PemProblem::WrongType(label(*kind).to_owned()),
        None => match first_begin_label(bytes) {
            Some(found) => PemProblem::WrongType(found),
            None => PemProblem::NoBlock,
        },
    }
}

/// The label of the first BEGIN line, for blocks the PEM parser does not know
/// (it skips them). Only printable ASCII, at most 40 characters: it is a label.
fn first_begin_label(bytes: &[u8]) -> Option<String> {
    bytes.split(|b| *b == b'\n' || *b == b'\r').find_map(|line| {
        let rest = line.strip_prefix(b"-----BEGIN ")?;
        let end = rest.windows(5).position(|w| w == b"-----")?;
        let label: String = rest[..end]
            .iter()
            .take(40)
            .map(|b| {
                if b.is_ascii_graphic() || *b == b' ' {
                    *b as char
                } else {
                    '?'
                }
            })
            .collect();
        Some(label)
    })
}

fn describe(err: &pem::Error) -> &'static str {
    match err {
        pem::Error::MissingSectionEnd { .. } => "missing END line, the value looks truncated",
        pem::Error::IllegalSectionStart { .. } => "malformed BEGIN line",
        pem::Error::Base64Decode(_) => "invalid base64 inside the block",
        pem::Error::SectionTooLarge => "block too large",
        _ => "unreadable PEM",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_read_round_trips() {
        let der: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        let pem = encode("CERTIFICATE", &der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        assert_eq!(certificates(pem.as_bytes()).unwrap(), vec![der]);
    }

    #[test]
    fn unknown_block_type_is_named() {
        let pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
        assert_eq!(
            certificates(pem.as_bytes()),
            Err(PemProblem::WrongType("OPENSSH PRIVATE KEY".into()))
        );
    }

    #[test]
    fn known_block_of_the_wrong_type_is_named() {
        let pem = encode("PUBLIC KEY", b"\x30\x00");
        assert_eq!(
            certificates(pem.as_bytes()),
            Err(PemProblem::WrongType("PUBLIC KEY".into()))
        );
        assert_eq!(
            private_key(pem.as_bytes()),
            Err(PemProblem::WrongType("PUBLIC KEY".into()))
        );
    }

    #[test]
    fn truncated_block_is_malformed() {
        let pem = encode("CERTIFICATE", &[1, 2, 3, 4, 5, 6]);
        let cut = &pem.as_bytes()[..pem.len() - 20];
        assert!(matches!(certificates(cut), Err(PemProblem::Malformed(_))));
    }

    #[test]
    fn junk_and_empty_values() {
        assert_eq!(certificates(b""), Err(PemProblem::Empty));
        assert_eq!(certificates(b" \n"), Err(PemProblem::Empty));
        assert_eq!(
            certificates(&[0x30, 0x82, 0xff, 0x00, 0x9c]),
            Err(PemProblem::NoBlock)
        );
    }
}
