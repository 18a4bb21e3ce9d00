//! `nats-server` with JetStream, optionally with TLS and client authorization (user/password,
//! token, or operator-mode JWTs).

use std::io::Read;
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::nats_jwt::NatsOperator;
use crate::process::{BackendError, Guarded, free_port, require, wait_until};
use crate::tls::{TestCa, path_str};

/// Client authentication of a [`NatsServer`]: `authorization {}` in its config, or operator
/// mode (trusted operator, accounts preloaded in a memory resolver; users bring `.creds`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsAuth {
    UserPassword(String, String),
    Token(String),
    Operator(Box<NatsOperator>),
}

/// How to start a server: plain by default; TLS on the client port (`tls {}` with the CA's
/// server certificate; with `verify`, client certificates are required) and/or credentials.
#[derive(Debug, Clone, Default)]
pub struct NatsSetup {
    pub tls: Option<Arc<TestCa>>,
    pub verify_clients: bool,
    pub auth: Option<NatsAuth>,
}

/// One `nats-server -js` on free client and monitoring ports, its store in a temporary directory.
#[derive(Debug)]
pub struct NatsServer {
    pub port: u16,
    pub monitor_port: u16,
    dir: tempfile::TempDir,
    process: Guarded,
    setup: NatsSetup,
}

impl NatsServer {
    pub fn start() -> Result<NatsServer, BackendError> {
        Self::start_with(NatsSetup::default())
    }

    pub fn start_with(setup: NatsSetup) -> Result<NatsServer, BackendError> {
        let dir = tempfile::Builder::new().prefix("sockudo-nats-").tempdir()?;
        let (port, monitor_port) = (free_port(), free_port());
        let process = spawn(&dir, port, monitor_port, &setup)?;
        Ok(NatsServer {
            port,
            monitor_port,
            dir,
            process,
            setup,
        })
    }

    /// `nats://127.0.0.1:P` (`tls://` with TLS), without credentials.
    pub fn url(&self) -> String {
        let scheme = if self.setup.tls.is_some() {
            "tls"
        } else {
            "nats"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// SIGKILL the server (a backend outage).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Start again on the same ports and store, after [`NatsServer::kill`].
    pub fn restart(&mut self) -> Result<(), BackendError> {
        self.process.kill();
        self.process = spawn(&self.dir, self.port, self.monitor_port, &self.setup)?;
        Ok(())
    }
}

/// A JSON string literal (valid in nats-server's config syntax).
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The server's config file: listen addresses, JetStream, and the optional TLS/auth blocks.
fn config_text(dir: &Path, port: u16, monitor: u16, setup: &NatsSetup) -> String {
    let store = dir.join("jetstream");
    let mut c = format!(
        "listen: \"127.0.0.1:{port}\"\nhttp: \"127.0.0.1:{monitor}\"\njetstream {{\n  store_dir: {}\n}}\n",
        quoted(&path_str(&store))
    );
    if let Some(ca) = &setup.tls {
        c.push_str(&format!(
            "tls {{\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n  verify: {}\n  timeout: 2\n}}\n",
            quoted(&path_str(&ca.cert_file)),
            quoted(&path_str(&ca.key_file)),
            quoted(&path_str(&ca.ca_file)),
            setup.verify_clients
        ));
    }
    match &setup.auth {
        Some(NatsAuth::UserPassword(u, p)) => c.push_str(&format!(
            "authorization {{\n  user: {}\n  password: {}\n}}\n",
            quoted(u),
            quoted(p)
        )),
        Some(NatsAuth::Token(t)) => {
            c.push_str(&format!("authorization {{\n  token: {}\n}}\n", quoted(t)))
        }
        Some(NatsAuth::Operator(op)) => c.push_str(&op.server_config()),
        None => {}
    }
    c
}

fn spawn(
    dir: &tempfile::TempDir,
    port: u16,
    monitor: u16,
    setup: &NatsSetup,
) -> Result<Guarded, BackendError> {
    let bin = require("nats-server", "nats-server")?;
    let log = dir.path().join("nats.log");
    let conf = dir.path().join("nats.conf");
    std::fs::write(&conf, config_text(dir.path(), port, monitor, setup))?;
    let mut cmd = Command::new(bin);
    cmd.args(["-c", &path_str(&conf)]);
    let process = Guarded::spawn(cmd, &format!("nats-server on port {port}"), &log)?;
    // Ready when the client port greets with INFO (sent in clear, before any TLS handshake)
    // and JetStream reports enabled.
    wait_until(
        &format!("nats-server on port {port}"),
        Duration::from_secs(10),
        &log,
        || {
            let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).is_ok()
                && &buf == b"INFO"
                && std::fs::read_to_string(&log).is_ok_and(|l| l.contains("Server is ready"))
        },
    )?;
    Ok(process)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_with_jetstream_and_restarts() {
        let mut n = NatsServer::start().unwrap();
        let log = std::fs::read_to_string(n.dir.path().join("nats.log")).unwrap();
        assert!(log.contains("Starting JetStream"), "{log}");
        n.kill();
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, n.port)).is_err());
        n.restart().unwrap();
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, n.port)).is_ok());
    }

    #[test]
    fn tls_and_credentials_are_configured() {
        let ca = Arc::new(TestCa::generate("nats-test-ca").unwrap());
        let n = NatsServer::start_with(NatsSetup {
            tls: Some(ca),
            verify_clients: false,
            auth: Some(NatsAuth::Token("t0k".into())),
        })
        .unwrap();
        assert!(n.url().starts_with("tls://"));
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, n.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 1024];
        let len = s.read(&mut buf).unwrap();
        let info = String::from_utf8_lossy(&buf[..len]);
        assert!(info.contains("\"tls_required\":true"), "{info}");
        assert!(info.contains("\"auth_required\":true"), "{info}");
    }

    #[test]
    fn operator_mode_trusts_the_generated_operator() {
        let op = NatsOperator::generate("harness").unwrap();
        let n = NatsServer::start_with(NatsSetup {
            auth: Some(NatsAuth::Operator(Box::new(op))),
            ..NatsSetup::default()
        })
        .unwrap();
        let log = std::fs::read_to_string(n.dir.path().join("nats.log")).unwrap();
        assert!(log.contains("Trusted Operators"), "{log}");
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, n.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 1024];
        let len = s.read(&mut buf).unwrap();
        let info = String::from_utf8_lossy(&buf[..len]);
        assert!(info.contains("\"auth_required\":true"), "{info}");
        assert!(info.contains("\"nonce\""), "JWT users sign a nonce: {info}");
    }
}
