//! The PEM files a `tls` table names, read and checked at load: a file
//! that is missing, not PEM, or a key that does not match its certificate
//! is a `check` error naming the file (docs/CONFIG.md), never a surprise at the
//! first handshake.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// A file named in a `tls` table.
#[derive(Debug, Clone, Copy)]
pub struct TlsFile<'a> {
    /// The config key it was given under (`cert_file`, `ca_file`, …), so a
    /// message says which one is wrong.
    pub key: &'static str,
    /// Resolved against the config's directory.
    pub path: &'a Path,
}

/// One problem with a TLS file. The message names the config key and the
/// file; `key` lets the caller point at the line that names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TlsFileError {
    pub key: &'static str,
    pub message: String,
}

/// A certificate chain and the private key of its first certificate,
/// checked to belong together: what a server presents, or a client for
/// mutual TLS.
#[derive(Clone)]
pub struct KeyPair {
    /// Ready for rustls.
    pub certified: Arc<CertifiedKey>,
    /// The two files' text, chain then key: reqwest builds a client
    /// identity from PEM only.
    pub pem: Vec<u8>,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key material.
        f.debug_struct("KeyPair")
            .field("certificates", &self.certified.cert.len())
            .finish_non_exhaustive()
    }
}

impl TlsFile<'_> {
    fn error(&self, problem: impl fmt::Display) -> TlsFileError {
        TlsFileError {
            key: self.key,
            message: format!("`{}` `{}` {problem}", self.key, self.path.display()),
        }
    }

    fn read(&self) -> Result<Vec<u8>, TlsFileError> {
        std::fs::read(self.path).map_err(|err| TlsFileError {
            key: self.key,
            message: format!(
                "cannot read `{}` `{}`: {err}",
                self.key,
                self.path.display()
            ),
        })
    }

    /// Every certificate in the file, in order (for a chain: the server's
    /// own first, then the intermediates).
    pub fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
        let text = self.read()?;
        self.certificates_in(&text)
    }

    fn certificates_in(&self, text: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
        let certificates = CertificateDer::pem_slice_iter(text)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| self.error(format_args!("is not valid PEM: {err}")))?;
        if certificates.is_empty() {
            return Err(self
                .error("is not a PEM certificate file (no `-----BEGIN CERTIFICATE-----` block)"));
        }
        Ok(certificates)
    }

    fn private_key_in(&self, text: &[u8]) -> Result<PrivateKeyDer<'static>, TlsFileError> {
        let mut keys = PrivateKeyDer::pem_slice_iter(text)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| self.error(format_args!("is not valid PEM: {err}")))?;
        match keys.len() {
            0 => Err(self.error(
                "is not a PEM private key (no PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY` block)",
            )),
            1 => Ok(keys.remove(0)),
            // Which one would be used is not obvious to the reader: refuse.
            n => Err(self.error(format_args!("holds {n} private keys; keep one"))),
        }
    }
}

/// Reads `cert` (a PEM chain) and `key` (its PEM private key) and checks
/// that the key is the certificate's. Every problem found, each naming its
/// file.
pub fn key_pair(cert: TlsFile<'_>, key: TlsFile<'_>) -> Result<KeyPair, Vec<TlsFileError>> {
    let cert_text = cert.read();
    let key_text = key.read();
    let chain = cert_text
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|text| cert.certificates_in(text));
    let private_key = key_text
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|text| key.private_key_in(text));
    let (chain, private_key) = match (chain, private_key) {
        (Ok(chain), Ok(private_key)) => (chain, private_key),
        (chain, private_key) => {
            return Err([chain.err(), private_key.err()]
                .into_iter()
                .flatten()
                .collect())
        }
    };
    let certified = CertifiedKey::from_der(chain, private_key, &super::provider())
        .map_err(|err| vec![pair_error(cert, key, &err)])?;
    let mut pem = cert_text.unwrap_or_default();
    // One file may hold both (a combined PEM): then once is enough.
    if cert.path != key.path {
        pem.push(b'\n');
        pem.extend(key_text.unwrap_or_default());
    }
    Ok(KeyPair {
        certified: Arc::new(certified),
        pem,
    })
}

/// Says which file is at fault when rustls refuses a chain and key.
fn pair_error(cert: TlsFile<'_>, key: TlsFile<'_>, err: &rustls::Error) -> TlsFileError {
    use rustls::{Error, InconsistentKeys};
    match err {
        Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => key.error(format_args!(
            "does not match the certificate in `{}` `{}`",
            cert.key,
            cert.path.display()
        )),
        Error::InvalidCertificate(why) => cert.error(format_args!(
            "holds a certificate that cannot be parsed: {why:?}"
        )),
        other => key.error(format_args!("holds a key that cannot be used: {other}")),
    }
}

/// The certificates of a CA file, each checked to be usable as a trust
/// anchor.
pub fn trust_anchors(ca: TlsFile<'_>) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let certificates = ca.certificates()?;
    let mut store = rustls::RootCertStore::empty();
    for (index, certificate) in certificates.iter().enumerate() {
        if let Err(err) = store.add(certificate.clone()) {
            return Err(ca.error(format_args!(
                "holds a certificate (#{}) that cannot be a trust anchor: {err}",
                index + 1
            )));
        }
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A directory of its own under the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("conflux-tls-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("a scratch dir");
            Scratch(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).expect("write");
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn self_signed() -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("a key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("a certificate");
        (cert.pem(), key.serialize_pem())
    }

    fn file<'a>(key: &'static str, path: &'a Path) -> TlsFile<'a> {
        TlsFile { key, path }
    }

    #[test]
    fn one_combined_file_can_be_both_certificate_and_key() {
        let scratch = Scratch::new("combined");
        let (cert, key) = self_signed();
        let both = scratch.write("both.pem", &format!("{cert}{key}"));
        let pair = key_pair(file("cert_file", &both), file("key_file", &both)).expect("a pair");
        assert_eq!(pair.certified.cert.len(), 1);
        let identity = reqwest::Identity::from_pem(&pair.pem);
        assert!(identity.is_ok(), "{identity:?}");
    }

    #[test]
    fn a_key_file_with_two_keys_is_refused() {
        let scratch = Scratch::new("two-keys");
        let (cert, key) = self_signed();
        let (_, other) = self_signed();
        let cert = scratch.write("cert.pem", &cert);
        let keys = scratch.write("keys.pem", &format!("{key}{other}"));
        let problems =
            key_pair(file("cert_file", &cert), file("key_file", &keys)).expect_err("ambiguous");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "key_file");
        assert!(
            problems[0].message.contains("2 private keys"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn both_files_are_reported_when_both_are_wrong() {
        let scratch = Scratch::new("both-wrong");
        let missing = scratch.0.join("missing.pem");
        let text = scratch.write("text.key", "hello\n");
        let problems = key_pair(file("cert_file", &missing), file("key_file", &text))
            .expect_err("two problems");
        let keys: Vec<&str> = problems.iter().map(|p| p.key).collect();
        assert_eq!(keys, ["cert_file", "key_file"]);
        assert!(problems[0].message.starts_with("cannot read `cert_file`"));
        assert!(problems[1].message.contains("is not a PEM private key"));
    }

    #[test]
    fn a_ca_file_must_hold_certificates_that_parse() {
        let scratch = Scratch::new("anchors");
        let (cert, _) = self_signed();
        let good = scratch.write("ca.pem", &cert);
        assert_eq!(
            trust_anchors(file("ca_file", &good)).expect("usable").len(),
            1
        );
        let bad = scratch.write(
            "bad.pem",
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
        );
        let problem = trust_anchors(file("ca_file", &bad)).expect_err("not a certificate");
        assert!(problem.message.contains("trust anchor"), "{problem}");
    }
}
