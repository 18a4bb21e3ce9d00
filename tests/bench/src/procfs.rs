//! CPU and memory of the server (and of this process) from /proc, plus the open-files limit.

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// CPU time (user + system, all threads) and resident memory, summed over some processes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sample {
    pub cpu_us: u64,
    /// The system (kernel) part of `cpu_us`.
    pub sys_us: u64,
    pub rss_kb: u64,
}

impl Sample {
    pub fn cpu_since(&self, before: &Sample) -> u64 {
        self.cpu_us.saturating_sub(before.cpu_us)
    }

    pub fn sys_since(&self, before: &Sample) -> u64 {
        self.sys_us.saturating_sub(before.sys_us)
    }
}

/// Sums over `pids`; an empty list gives zeros (no server to watch).
pub fn sample(pids: &[u32]) -> Result<Sample> {
    let mut total = Sample::default();
    for pid in pids {
        let s = sample_one(&pid.to_string())?;
        total.cpu_us += s.cpu_us;
        total.sys_us += s.sys_us;
        total.rss_kb += s.rss_kb;
    }
    Ok(total)
}

pub fn sample_self() -> Result<Sample> {
    sample_one("self")
}

fn sample_one(pid: &str) -> Result<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (is the server PID right?)"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let (utime, stime) = cpu_ticks(&stat)?;
    let us = |ticks: u64| ticks * 1_000_000 / clock_ticks_per_sec();
    Ok(Sample {
        cpu_us: us(utime + stime),
        sys_us: us(stime),
        rss_kb: vm_rss_kb(&status)?,
    })
}

/// (utime, stime): fields 14 and 15. The command name (field 2) may contain spaces and
/// parentheses, so fields are counted from the last ')'.
fn cpu_ticks(stat: &str) -> Result<(u64, u64)> {
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime, stime))
}

fn vm_rss_kb(status: &str) -> Result<u64> {
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("VmRSS:") {
            let kb = rest.split_whitespace().next().context("empty VmRSS")?;
            return Ok(kb.parse()?);
        }
    }
    // A zombie (exited server) has no VmRSS line.
    bail!("no VmRSS in /proc/PID/status (process exited?)")
}

/// CPU time of the whole machine from /proc/stat, all cores summed.
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineSample {
    /// user + nice + system + irq + softirq: every process's time, kernel threads included.
    pub busy_us: u64,
    /// Time the hypervisor ran something else while a vCPU wanted to run.
    pub steal_us: u64,
}

pub fn machine() -> Result<MachineSample> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    machine_from(&stat)
}

fn machine_from(stat: &str) -> Result<MachineSample> {
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    let t: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().context("malformed /proc/stat"))
        .collect::<Result<_>>()?;
    let field = |i: usize| t.get(i).copied().unwrap_or(0);
    let us = |ticks: u64| ticks * 1_000_000 / clock_ticks_per_sec();
    // user nice system idle iowait irq softirq steal
    Ok(MachineSample {
        busy_us: us(field(0) + field(1) + field(2) + field(5) + field(6)),
        steal_us: us(field(7)),
    })
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// Raises the soft open-files limit to the hard limit (20000 on these machines) and returns it:
/// every WebSocket is a file descriptor.
pub fn raise_nofile_limit() -> Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: lim is a valid rlimit with cur <= max.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            bail!("setrlimit: {}", std::io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_name() {
        let stat = "42 (a) b (c)) S 1 1 1 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 1 1 1";
        assert_eq!(cpu_ticks(stat).unwrap(), (7, 5));
    }

    #[test]
    fn sums_busy_time_and_steal_from_proc_stat() {
        let stat = "cpu  100 10 50 9000 7 3 20 5 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n";
        let m = machine_from(stat).unwrap();
        let us = |t: u64| t * 1_000_000 / clock_ticks_per_sec();
        assert_eq!(m.busy_us, us(183));
        assert_eq!(m.steal_us, us(5));
    }

    #[test]
    fn reads_self() {
        let s = sample_self().unwrap();
        assert!(s.rss_kb > 0);
    }
}
