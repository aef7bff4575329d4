//! Mutual TLS for FPC over TCP: the identity files (certificate chain,
//! private key, trusted CA) named on the command lines, the rustls
//! configurations built from them, and the one TCP policy of a client
//! process.
//!
//! Invariants:
//! * TLS 1.3 only, with the `ring` provider, both sides authenticated: fpd
//!   accepts a client only with a certificate chain to its CA (the
//!   handshake fails otherwise, before any FPC byte is read), and a client
//!   accepts a blade only with a certificate to its CA naming the address
//!   it dialled (an IP address in the certificate's subject alternative
//!   names, as `tcp:HOST:PORT` names a blade by address).
//! * Plain TCP is used only when asked for (`--allow-plain-tcp`) and only
//!   towards or on a loopback address; anything else without TLS files is
//!   refused where it is configured (a clear error at start), never
//!   silently downgraded.
//! * A file that cannot be used is one line naming the file and the
//!   reason ([`TlsError`]); files are read whole, at most [`MAX_FILE`]
//!   bytes, once at start.
//! * A client process has one TCP policy ([`install_client`]), set once
//!   from its command line before it dials: every FPC client of a process
//!   (cmgrd's blades, the check, the supervisor's queries) speaks as the
//!   same identity, so the policy is process-wide rather than threaded
//!   through every caller of `connect`.
//!
//! The server is tokio-based, so it uses tokio-rustls; the blocking
//! [`super::QueryClient`] drives a rustls connection over a std stream
//! (`rustls::StreamOwned`).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::RootCertStore;

/// The largest certificate, key or CA file read.
pub const MAX_FILE: u64 = 1 << 20;

/// The three files of one side's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This side's certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA whose certificates the peer must present (PEM, one or more).
    pub ca: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The I/O error is part of the one line (not a source).
    #[error("{}: cannot read it: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },
    #[error("{}: larger than {MAX_FILE} bytes: not a certificate or key file", path.display())]
    TooLarge { path: PathBuf },
    #[error("{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no PEM private key (PKCS#8, RSA or EC PRIVATE KEY) in it", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: bad PEM: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("{}: not a usable CA certificate: {reason}", path.display())]
    BadCa { path: PathBuf, reason: String },
    #[error("{}: cannot be used with the certificate {}: {reason}", key.display(), cert.display())]
    BadIdentity {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// Reads a file whole, bounded.
fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let err = |error| TlsError::Read {
        path: path.to_owned(),
        error,
    };
    let file = std::fs::File::open(path).map_err(err)?;
    let mut out = Vec::new();
    file.take(MAX_FILE + 1).read_to_end(&mut out).map_err(err)?;
    if out.len() as u64 > MAX_FILE {
        return Err(TlsError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(out)
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        e => TlsError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    })
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path)? {
        store.add(cert).map_err(|e| TlsError::BadCa {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(Arc::new(store))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn identity_error(files: &TlsFiles, e: rustls::Error) -> TlsError {
    TlsError::BadIdentity {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason: e.to_string(),
    }
}

/// fpd's side: its certificate, and client certificates required.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let roots = roots(&files.ca)?;
    let (certs, key) = (certificates(&files.cert)?, private_key(&files.key)?);
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| TlsError::BadCa {
            path: files.ca.clone(),
            reason: e.to_string(),
        })?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| identity_error(files, e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| identity_error(files, e))?;
    Ok(Arc::new(config))
}

/// A client's side: its certificate, and the blade's checked against the
/// CA.
pub fn client_config(files: &TlsFiles) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let roots = roots(&files.ca)?;
    let (certs, key) = (certificates(&files.cert)?, private_key(&files.key)?);
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| identity_error(files, e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| identity_error(files, e))?;
    Ok(Arc::new(config))
}

/// How a client process speaks FPC over TCP.
#[derive(Clone, Default)]
pub struct ClientTcp {
    /// Mutual TLS with this identity (`--tls-cert`, `--tls-key`,
    /// `--tls-ca`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Plain TCP to loopback addresses (`--allow-plain-tcp`); TLS, if
    /// configured, everywhere else.
    pub plain_loopback: bool,
}

impl std::fmt::Debug for ClientTcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTcp")
            .field("tls", &self.tls.is_some())
            .field("plain_loopback", &self.plain_loopback)
            .finish()
    }
}

static CLIENT: OnceLock<ClientTcp> = OnceLock::new();

/// Sets this process's TCP policy; the first call wins (it is set once,
/// from the command line, before any connection).
pub fn install_client(tcp: ClientTcp) {
    let _ = CLIENT.set(tcp);
}

/// The policy from the usual options: the three files, and whether plain
/// TCP to loopback addresses is allowed.
pub fn client_from_options(
    files: Option<&TlsFiles>,
    allow_plain: bool,
) -> Result<ClientTcp, TlsError> {
    Ok(ClientTcp {
        tls: files.map(client_config).transpose()?,
        plain_loopback: allow_plain,
    })
}

/// What a client does to dial `addr`.
pub(crate) enum Dial {
    Tls(Arc<rustls::ClientConfig>, ServerName<'static>),
    Plain,
}

/// How to dial `addr` under this process's policy, or why it may not be.
pub(crate) fn dial(addr: &SocketAddr) -> io::Result<Dial> {
    let policy = CLIENT.get();
    if policy.is_some_and(|p| p.plain_loopback) && addr.ip().is_loopback() {
        return Ok(Dial::Plain);
    }
    match policy.and_then(|p| p.tls.clone()) {
        Some(config) => Ok(Dial::Tls(config, addr.ip().into())),
        None => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("FPC over TCP to {addr} needs TLS: give --tls-cert, --tls-key and --tls-ca (--allow-plain-tcp allows plain TCP to loopback addresses only)"),
        )),
    }
}

/// Whether this process may dial TCP endpoints at all, for a check at
/// start: the same sentence as a refused dial.
pub fn check_dial(addr: &SocketAddr) -> io::Result<()> {
    dial(addr).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_errors_name_the_file_and_the_reason() {
        let dir = std::env::temp_dir().join(format!("fpd-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "hello\n").unwrap();
        let missing = dir.join("missing.pem");
        let files = |cert: &Path, key: &Path, ca: &Path| TlsFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            ca: ca.to_owned(),
        };
        let e = server_config(&files(&junk, &junk, &missing)).unwrap_err();
        let line = e.to_string();
        assert!(
            line.starts_with(&format!("{}: cannot read it: ", missing.display())),
            "{line}"
        );
        let e = client_config(&files(&junk, &junk, &junk)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
                junk.display()
            )
        );
        assert!(!e.to_string().contains('\n'));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
