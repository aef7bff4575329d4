//! Certificates made at run time for the TLS scenarios, with the
//! `openssl` command line (scripts/setup.sh installs it): a CA, and leaf
//! certificates it signs, each naming the IP addresses given (a blade's
//! certificate names the address cache managers dial). No key is ever
//! committed: each scenario makes its own in its temporary directory.

use std::path::{Path, PathBuf};

use fpc::TlsFiles;

use crate::sh;

/// A CA in a directory, and what it signed there.
pub struct Pki {
    pub dir: PathBuf,
    pub name: String,
    pub ca: PathBuf,
    ca_key: PathBuf,
}

impl Pki {
    /// A new CA named `name` (its files `name-ca.pem`, `name-ca.key`).
    pub fn new(dir: &Path, name: &str) -> Pki {
        let ca = dir.join(format!("{name}-ca.pem"));
        let ca_key = dir.join(format!("{name}-ca.key"));
        sh(&[
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} CA"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            ca_key.to_str().unwrap(),
            "-out",
            ca.to_str().unwrap(),
        ]);
        Pki {
            dir: dir.to_owned(),
            name: name.to_owned(),
            ca,
            ca_key,
        }
    }

    /// A leaf certificate `leaf` signed by this CA, for both ends of a
    /// connection, naming `ips` (none for a client only).
    pub fn issue(&self, leaf: &str, ips: &[&str]) -> TlsFiles {
        let base = self.dir.join(format!("{}-{leaf}", self.name));
        let (cert, key, csr, ext) = (
            base.with_extension("pem"),
            base.with_extension("key"),
            base.with_extension("csr"),
            base.with_extension("ext"),
        );
        let mut extensions = String::from(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
        );
        if !ips.is_empty() {
            let sans: Vec<String> = ips.iter().map(|ip| format!("IP:{ip}")).collect();
            extensions.push_str(&format!("subjectAltName={}\n", sans.join(",")));
        }
        std::fs::write(&ext, extensions).unwrap();
        sh(&[
            "openssl",
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={leaf}"),
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            csr.to_str().unwrap(),
        ]);
        sh(&[
            "openssl",
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            csr.to_str().unwrap(),
            "-CA",
            self.ca.to_str().unwrap(),
            "-CAkey",
            self.ca_key.to_str().unwrap(),
            "-CAcreateserial",
            "-extfile",
            ext.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]);
        TlsFiles {
            cert,
            key,
            ca: self.ca.clone(),
        }
    }
}

/// The three options naming `files`, for a daemon's command line.
pub fn tls_args(files: &TlsFiles) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        files.cert.display().to_string(),
        "--tls-key".into(),
        files.key.display().to_string(),
        "--tls-ca".into(),
        files.ca.display().to_string(),
    ]
}
