//! `nats-server` with JetStream.

use std::io::Read;
use std::net::{Ipv4Addr, TcpStream};
use std::process::Command;
use std::time::Duration;

use crate::process::{BackendError, Guarded, free_port, require, wait_until};

/// One `nats-server -js` on free client and monitoring ports, its store in a temporary directory.
#[derive(Debug)]
pub struct NatsServer {
    pub port: u16,
    pub monitor_port: u16,
    dir: tempfile::TempDir,
    process: Guarded,
}

impl NatsServer {
    pub fn start() -> Result<NatsServer, BackendError> {
        let dir = tempfile::Builder::new().prefix("sockudo-nats-").tempdir()?;
        let (port, monitor_port) = (free_port(), free_port());
        let process = spawn(&dir, port, monitor_port)?;
        Ok(NatsServer {
            port,
            monitor_port,
            dir,
            process,
        })
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
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
        self.process = spawn(&self.dir, self.port, self.monitor_port)?;
        Ok(())
    }
}

fn spawn(dir: &tempfile::TempDir, port: u16, monitor: u16) -> Result<Guarded, BackendError> {
    let bin = require("nats-server", "nats-server")?;
    let store = dir.path().join("jetstream");
    let log = dir.path().join("nats.log");
    let mut cmd = Command::new(bin);
    cmd.args([
        "-a",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-m",
        &monitor.to_string(),
    ])
    .args(["-js", "-sd", &store.display().to_string()]);
    let process = Guarded::spawn(cmd, &format!("nats-server on port {port}"), &log)?;
    // Ready when the client port greets with INFO and JetStream reports enabled.
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
}
