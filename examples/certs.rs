//! Makes a throwaway certificate authority and the certificates a TLS
//! setup needs, so trying HTTPS and mutual TLS takes no openssl:
//!
//! ```text
//! cargo run --example certs -- DIR [HOST…]
//! ```
//!
//! HOST defaults to `localhost 127.0.0.1 ::1` (names and IP addresses).
//! Writes into DIR (created when missing):
//!
//! | file | what it is | where it goes |
//! |---|---|---|
//! | `ca.pem` | the CA's certificate | a service's `tls.ca_file`; `curl --cacert` |
//! | `gateway.pem`, `gateway.key` | Conflux's server certificate and key | `[server].tls` |
//! | `service.pem`, `service.key` | a REST service's server certificate | the service's own TLS |
//! | `client.pem`, `client.key` | Conflux's client certificate (mutual TLS) | a service's `tls.client_cert_file`/`client_key_file`; the service trusts `ca.pem` for clients |
//!
//! The CA's private key is not written: nothing else can ever be signed by
//! it, so trusting `ca.pem` trusts exactly these certificates. Keys are
//! ECDSA P-256 in PKCS#8 PEM. They protect nothing: for trying things out.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().filter(|a| !a.starts_with('-')) else {
        fail("usage: cargo run --example certs -- DIR [HOST…]");
    };
    let mut hosts: Vec<String> = args.collect();
    if hosts.is_empty() {
        hosts = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    }
    let dir = Path::new(&dir);
    if let Err(err) = std::fs::create_dir_all(dir) {
        fail(&format!("cannot create {}: {err}", dir.display()));
    }

    let ca_key = key();
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "Conflux throwaway CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca
        .self_signed(&ca_key)
        .unwrap_or_else(|err| fail(&err.to_string()));
    let issuer = Issuer::new(ca, ca_key);
    write(dir, "ca.pem", &ca_cert.pem());

    let leaves = [
        ("gateway", ExtendedKeyUsagePurpose::ServerAuth),
        ("service", ExtendedKeyUsagePurpose::ServerAuth),
        ("client", ExtendedKeyUsagePurpose::ClientAuth),
    ];
    for (name, usage) in leaves {
        let leaf_key = key();
        let mut leaf = CertificateParams::new(hosts.clone())
            .unwrap_or_else(|err| fail(&format!("invalid host name: {err}")));
        leaf.distinguished_name
            .push(DnType::CommonName, format!("conflux {name}"));
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![usage];
        let cert = leaf
            .signed_by(&leaf_key, &issuer)
            .unwrap_or_else(|err| fail(&err.to_string()));
        write(dir, &format!("{name}.pem"), &cert.pem());
        write(dir, &format!("{name}.key"), &leaf_key.serialize_pem());
    }
    println!(
        "wrote ca.pem, gateway.pem/.key, service.pem/.key, client.pem/.key into {} for {}",
        dir.display(),
        hosts.join(", ")
    );
}

fn key() -> KeyPair {
    KeyPair::generate().unwrap_or_else(|err| fail(&format!("cannot make a key: {err}")))
}

/// Writes a file; keys readable by their owner only.
fn write(dir: &Path, name: &str, text: &str) {
    use std::io::Write;
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if name.ends_with(".key") {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options
        .open(&path)
        .and_then(|mut file| file.write_all(text.as_bytes()));
    if let Err(err) = written {
        fail(&format!("cannot write {}: {err}", path.display()));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(2);
}
