//! The JSON record of one run (one line appended to `--json FILE`) and the human-readable print.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Target;

/// A headline number, kept in order, with the direction that is better (for the comparison).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub unit: String,
    /// `None` when it could not be measured (e.g. CPU without --server-pid).
    pub value: Option<f64>,
    pub higher_is_better: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub label: String,
    pub mode: String,
    pub server: String,
    pub time_unix: u64,
    pub target: String,
    pub method: String,
    pub params: Value,
    pub summary: Vec<Metric>,
    /// Mode-specific detail (per-step numbers, error counts, client CPU).
    pub details: Value,
}

impl Record {
    pub fn new(target: &Target, mode: &str, method: String, params: Value) -> Record {
        Record {
            label: target
                .args
                .label
                .clone()
                .unwrap_or_else(|| mode.to_string()),
            mode: mode.to_string(),
            server: target.args.server_name.clone(),
            time_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            target: target.describe(),
            method,
            params,
            summary: Vec::new(),
            details: Value::Null,
        }
    }

    /// Prints the METHOD block (before measuring).
    pub fn print_method(&self) {
        println!("=== {} [{}] on {}", self.label, self.mode, self.server);
        println!("METHOD");
        for line in self.method.lines() {
            println!("  {line}");
        }
        println!("  target: {}", self.target);
        println!("  params: {}", self.params);
    }

    pub fn metric(&mut self, name: &str, unit: &str, value: Option<f64>, higher_is_better: bool) {
        self.summary.push(Metric {
            name: name.into(),
            unit: unit.into(),
            value,
            higher_is_better,
        });
    }

    /// Prints the RESULTS block (the headline numbers).
    pub fn print_summary(&self) {
        println!("RESULTS ({})", self.label);
        for m in &self.summary {
            match m.value {
                Some(v) => println!("  {:<44} {:>14} {}", m.name, fmt_num(v), m.unit),
                None => println!("  {:<44} {:>14} {}", m.name, "n/a", m.unit),
            }
        }
    }
}

pub fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

pub fn append(path: &Path, record: &Record) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(f, "{}", serde_json::to_string(record)?)?;
    Ok(())
}

pub fn read_all(path: &Path) -> Result<Vec<Record>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{} line {}", path.display(), i + 1))
        })
        .collect()
}
