//! Child processes with prefixed log streaming, a memory of their last lines for error messages,
//! and a stop that escalates from SIGTERM to SIGKILL.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{FleetError, Result};

/// Lines kept per process for error messages and [`Proc::output`].
const KEPT_LINES: usize = 400;

/// How a process's output is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spawn {
    /// Print each line as `[name] line` on stdout.
    pub echo: bool,
    /// Linux: the child gets SIGKILL when the thread that spawned it dies, so a crashed harness
    /// leaves nothing behind. Only for a spawning thread that lives as long as the fleet (the
    /// command's main thread), never for short-lived worker threads.
    pub die_with_parent: bool,
}

/// One running child.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Child,
    lines: Arc<Mutex<VecDeque<String>>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

/// Finds `binary` on PATH or says how to install it.
pub fn require(binary: &'static str, package: &'static str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
        .ok_or(FleetError::MissingBinary { binary, package })
}

fn pump(
    name: String,
    stream: impl Read + Send + 'static,
    lines: Arc<Mutex<VecDeque<String>>>,
    echo: bool,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if echo {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "[{name}] {line}");
            }
            let mut kept = lines.lock().expect("log buffer lock");
            if kept.len() == KEPT_LINES {
                kept.pop_front();
            }
            kept.push_back(line);
        }
    })
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, how: Spawn) -> Result<Proc> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a terminal's Ctrl-C reaches only the harness, which then
            // stops nodes before the backends they use.
            .process_group(0);
        if how.die_with_parent {
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().map_err(|source| FleetError::Spawn {
            what: name.to_string(),
            source,
        })?;
        let lines = Arc::new(Mutex::new(VecDeque::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(pump(name.into(), out, lines.clone(), how.echo));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(pump(name.into(), err, lines.clone(), how.echo));
        }
        Ok(Proc {
            name: name.to_string(),
            child,
            lines,
            readers,
            status: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status once it has exited (reaped), else None.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Its last lines of output.
    pub fn output(&self) -> String {
        let kept = self.lines.lock().expect("log buffer lock");
        kept.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Waits for the output readers after exit, so the last lines (e.g. an error) are kept.
    pub fn output_after_exit(&mut self) -> String {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        self.output()
    }

    fn signal(&self, sig: libc::c_int) {
        if self.status.is_none() {
            // SAFETY: kill(2) on our own child's pid; it is not reaped yet, so the pid is still ours.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, sig);
            }
        }
    }

    /// Sends SIGTERM without waiting (so several processes drain at once).
    pub fn begin_stop(&mut self) {
        if self.exited().is_none() {
            self.signal(libc::SIGTERM);
        }
    }

    /// Waits up to `timeout` after [`Proc::begin_stop`], then SIGKILLs; always reaps.
    pub fn finish_stop(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.exited() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill()
    }

    /// SIGKILL, no goodbye (a crash), and reap.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(s) = self.exited() {
            return s;
        }
        self.signal(libc::SIGKILL);
        let status = self.child.wait().expect("waiting for a killed child");
        self.status = Some(status);
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Stops processes together: SIGTERM to all, then each gets `timeout` before SIGKILL.
pub fn stop_all(procs: &mut [Proc], timeout: Duration) {
    procs.iter_mut().for_each(Proc::begin_stop);
    let deadline = Instant::now() + timeout;
    for p in procs {
        p.finish_stop(deadline.saturating_duration_since(Instant::now()));
    }
}

/// True while a process with this pid exists (for "nothing left behind" checks).
pub fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks existence and permission.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// Polls `probe` every 50 ms until it succeeds, `proc` exits, or `timeout` passes.
pub fn wait_ready(
    proc: &mut Proc,
    timeout: Duration,
    mut probe: impl FnMut() -> bool,
) -> Result<()> {
    let start = Instant::now();
    loop {
        if probe() {
            return Ok(());
        }
        if let Some(status) = proc.exited() {
            return Err(FleetError::Exited {
                what: proc.name.clone(),
                status: status.to_string(),
                log: proc.output_after_exit(),
            });
        }
        if start.elapsed() > timeout {
            return Err(FleetError::NotReady {
                what: proc.name.clone(),
                secs: timeout.as_secs(),
                log: proc.output(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
