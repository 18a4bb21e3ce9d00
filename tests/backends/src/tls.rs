//! Throwaway certificates for TLS tests, made with the `openssl` CLI (installed by
//! `tests/setup/install-deps.sh`): a CA, a server certificate for `127.0.0.1`/`localhost` and a
//! client certificate, all signed by that CA. Nothing outlives the handle.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::{BackendError, require};

/// A CA with one server and one client certificate, in a temporary directory.
#[derive(Debug)]
pub struct TestCa {
    _dir: tempfile::TempDir,
    /// PEM of the CA certificate: what clients trust.
    pub ca_file: PathBuf,
    /// Server certificate and key (SAN `IP:127.0.0.1`, `DNS:localhost`).
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Client certificate and key, for mutual TLS.
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), BackendError> {
    let bin = require("openssl", "openssl")?;
    let out = Command::new(bin)
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(|source| BackendError::Spawn {
            what: "openssl".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(BackendError::Command {
            what: format!("openssl {}", args.join(" ")),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

/// A key and a certificate signed by `ca.key`, with the given extensions file.
fn signed(dir: &Path, name: &str, cn: &str, ext: &str) -> Result<(), BackendError> {
    let (key, csr, crt, extfile) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    std::fs::write(dir.join(&extfile), ext)?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={cn}"),
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-sha256",
            "-extfile",
            &extfile,
        ],
    )
}

impl TestCa {
    /// A fresh CA (`/CN={name}`) and its certificates. Two calls give two unrelated CAs: one
    /// can play the "wrong CA" of the other.
    pub fn generate(name: &str) -> Result<TestCa, BackendError> {
        let dir = tempfile::Builder::new().prefix("sockudo-tls-").tempdir()?;
        let d = dir.path();
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-sha256",
                "-subj",
                &format!("/CN={name}"),
            ],
        )?;
        signed(
            d,
            "server",
            "localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
             keyUsage=digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth,clientAuth\n",
        )?;
        signed(
            d,
            "client",
            "sockudo-test-client",
            "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
        )?;
        Ok(TestCa {
            ca_file: d.join("ca.crt"),
            cert_file: d.join("server.crt"),
            key_file: d.join("server.key"),
            client_cert_file: d.join("client.crt"),
            client_key_file: d.join("client.key"),
            _dir: dir,
        })
    }
}

/// Path as a string, for configs and command lines.
pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
