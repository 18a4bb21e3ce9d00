//! Child processes that die with their handle, and the waiting that makes them usable.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "`{binary}` is not installed: run tests/setup/install-deps.sh (or `apt-get install -y {package}`)"
    )]
    Missing {
        binary: &'static str,
        package: &'static str,
    },
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} did not become ready within {secs} s; its log:\n{log}")]
    NotReady {
        what: String,
        secs: u64,
        log: String,
    },
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("temporary directory: {0}")]
    TempDir(#[from] std::io::Error),
}

/// A port nobody listens on right now, for a process the caller starts at once.
///
/// Ports come from 10000-19999, below the kernel's ephemeral range (usually 32768-60999): a
/// port from that range could be taken by some outgoing connection between this call and the
/// bind, which made servers fail with "address in use". A Redis Cluster node also listens on
/// its port + 10000 (20000-29999 here), which is neither handed out nor ephemeral. A
/// process-wide cursor, started at a random offset (test binaries run side by side), keeps
/// calls from repeating. Where the ephemeral range starts lower, the kernel picks.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOWEST: u32 = 10_000;
    const SPAN: u32 = 10_000;
    const BUS_OFFSET: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    if ephemeral_low >= LOWEST + SPAN + BUS_OFFSET {
        let start = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish() as u32;
        let _ = NEXT.compare_exchange(u32::MAX, start % SPAN, Ordering::AcqRel, Ordering::Acquire);
        for _ in 0..SPAN {
            let port = LOWEST + NEXT.fetch_add(1, Ordering::AcqRel) % SPAN;
            if TcpListener::bind((Ipv4Addr::LOCALHOST, port as u16)).is_ok() {
                return port as u16;
            }
        }
    }
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral loopback port")
}

/// Finds `binary` on PATH or explains how to get it.
pub(crate) fn require(
    binary: &'static str,
    package: &'static str,
) -> Result<PathBuf, BackendError> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
        .ok_or(BackendError::Missing { binary, package })
}

/// A child process killed (and reaped) on drop.
#[derive(Debug)]
pub(crate) struct Guarded {
    pub child: Option<Child>,
}

impl Guarded {
    pub fn spawn(mut cmd: Command, what: &str, log: &Path) -> Result<Guarded, BackendError> {
        let log_file = std::fs::File::create(log)?;
        let err_file = log_file.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(err_file));
        let child = cmd.spawn().map_err(|source| BackendError::Spawn {
            what: what.into(),
            source,
        })?;
        Ok(Guarded { child: Some(child) })
    }

    /// SIGKILL: the "no goodbye" death tests need.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `probe` until it succeeds or `timeout` passes.
pub(crate) fn wait_until(
    what: &str,
    timeout: Duration,
    log: &Path,
    mut probe: impl FnMut() -> bool,
) -> Result<(), BackendError> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if probe() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(BackendError::NotReady {
        what: what.into(),
        secs: timeout.as_secs(),
        log: std::fs::read_to_string(log).unwrap_or_default(),
    })
}

/// Sends one inline command to a RESP server and returns its first reply line.
pub(crate) fn resp_command(port: u16, command: &str) -> Option<String> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}
