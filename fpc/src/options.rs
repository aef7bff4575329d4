//! The command-line options of mutual TLS for FPC over TCP, one clap
//! definition shared by fpd, cmgrd and fpsync-check (flattened into each
//! program's options, so the man pages and completions carry it too).
//! clap only checks that the three files go together; reading them is
//! [`crate::client_from_options`]'s and the server's.

use std::path::PathBuf;

use crate::TlsFiles;

/// FPC over TCP: the identity files of mutual TLS, and plain TCP for
/// loopback tests. One definition for fpd, cmgrd and fpsync-check.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct TlsOptions {
    /// This side's certificate chain (PEM) for FPC over TCP (mutual TLS);
    /// a blade's must name the address cache managers dial (an IP SAN).
    /// Needs --tls-key and --tls-ca.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert", "tls_ca"])]
    pub tls_key: Option<PathBuf>,
    /// The CA (PEM) whose certificates the other side must present.
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
    /// Allow plain TCP (no TLS) on or to loopback addresses, for testing;
    /// any other TCP address needs the TLS files.
    #[arg(long)]
    pub allow_plain_tcp: bool,
}

impl TlsOptions {
    /// The TLS files, when all three are given (clap makes them all or
    /// none).
    pub fn files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            ca: self.tls_ca.clone()?,
        })
    }

    /// This process's TCP policy as a client, from these options.
    pub fn client(&self) -> Result<crate::ClientTcp, crate::TlsError> {
        crate::client_from_options(self.files().as_ref(), self.allow_plain_tcp)
    }
}
