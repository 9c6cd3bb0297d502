//! TLS to the services: `https://` URLs are verified against the system's
//! trusted roots, host name included (docs/CONFIG.md); a service's `tls.ca_file`
//! replaces those roots with a private CA, and `client_cert_file` +
//! `client_key_file` present a client certificate (mutual TLS).
//!
//! There is no switch to skip verification: a certificate that fails it
//! fails the call (`UPSTREAM_UNAVAILABLE`, logged with the reason).

use std::path::PathBuf;

use super::files::{self, TlsFile, TlsFileError};

/// A service's `tls` table, read and checked at load.
#[derive(Debug, Clone, Default)]
pub struct ServiceTlsConfig {
    /// `ca_file`, resolved against the config's directory.
    pub ca_file: Option<PathBuf>,
    /// Its certificates: trusted instead of the system's roots.
    pub ca_certificates: Vec<reqwest::Certificate>,
    /// `client_cert_file` + `client_key_file`, presented when the service
    /// asks for a client certificate.
    pub client_identity: Option<ClientIdentity>,
}

/// A client certificate chain and its key.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub identity: reqwest::Identity,
}

impl ServiceTlsConfig {
    /// Reads and checks the files a service's `tls` table names (paths
    /// resolved already); every problem, each naming its file. Whether
    /// `client_cert_file` and `client_key_file` come together is the
    /// caller's check: it knows where to point.
    pub fn load(
        ca_file: Option<PathBuf>,
        client: Option<(PathBuf, PathBuf)>,
    ) -> Result<Self, Vec<TlsFileError>> {
        let mut problems = Vec::new();
        let mut ca_certificates = Vec::new();
        if let Some(path) = &ca_file {
            let ca = TlsFile {
                key: "ca_file",
                path,
            };
            match files::trust_anchors(ca) {
                Ok(certificates) => {
                    for der in certificates {
                        match reqwest::Certificate::from_der(&der) {
                            Ok(certificate) => ca_certificates.push(certificate),
                            Err(err) => problems.push(TlsFileError {
                                key: ca.key,
                                message: format!("`ca_file` `{}`: {err}", path.display()),
                            }),
                        }
                    }
                }
                Err(problem) => problems.push(problem),
            }
        }
        let client_identity = match client {
            None => None,
            Some((cert_file, key_file)) => match client_identity(cert_file, key_file) {
                Ok(identity) => Some(identity),
                Err(found) => {
                    problems.extend(found);
                    None
                }
            },
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(ServiceTlsConfig {
            ca_file,
            ca_certificates,
            client_identity,
        })
    }
}

fn client_identity(
    cert_file: PathBuf,
    key_file: PathBuf,
) -> Result<ClientIdentity, Vec<TlsFileError>> {
    let cert = TlsFile {
        key: "client_cert_file",
        path: &cert_file,
    };
    let key = TlsFile {
        key: "client_key_file",
        path: &key_file,
    };
    let pair = files::key_pair(cert, key)?;
    // Checked here so that the client build at start-up cannot fail on it.
    let identity = reqwest::Identity::from_pem(&pair.pem).map_err(|err| {
        vec![TlsFileError {
            key: key.key,
            message: format!(
                "`client_cert_file` `{}` and `client_key_file` `{}` do not make a client identity: {err}",
                cert_file.display(),
                key_file.display()
            ),
        }]
    })?;
    Ok(ClientIdentity {
        cert_file,
        key_file,
        identity,
    })
}

/// Applies a service's TLS settings to its client. `None` (no `tls` table):
/// the system's roots only.
pub fn configure(
    builder: reqwest::ClientBuilder,
    tls: Option<&ServiceTlsConfig>,
) -> reqwest::ClientBuilder {
    // The system's roots, not the bundle compiled into the binary: an
    // operator trusts and distrusts CAs in one place (docs/CONFIG.md).
    let mut builder = builder.tls_built_in_webpki_certs(false);
    let Some(tls) = tls else {
        return builder;
    };
    if !tls.ca_certificates.is_empty() {
        builder = builder.tls_built_in_root_certs(false);
        for certificate in &tls.ca_certificates {
            builder = builder.add_root_certificate(certificate.clone());
        }
    }
    if let Some(client) = &tls.client_identity {
        builder = builder.identity(client.identity.clone());
    }
    builder
}
