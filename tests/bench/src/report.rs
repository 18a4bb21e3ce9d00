//! `report`: JSON records of our server and of the reference, side by side, as Markdown.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use serde_json::Value;

use crate::record::{Record, fmt_num, read_all};

#[derive(Args, Clone, Debug)]
pub struct ReportArgs {
    /// JSON records of our server.
    #[arg(long)]
    pub ours: Option<PathBuf>,
    /// JSON records of the reference server.
    #[arg(long)]
    pub reference: Option<PathBuf>,
}

/// The last record of each label, in order of first appearance.
fn by_label(path: &Option<PathBuf>) -> Result<(Vec<String>, BTreeMap<String, Record>)> {
    let mut order = Vec::new();
    let mut map = BTreeMap::new();
    if let Some(p) = path.as_ref().filter(|p| p.exists()) {
        for r in read_all(p)? {
            if !map.contains_key(&r.label) {
                order.push(r.label.clone());
            }
            map.insert(r.label.clone(), r);
        }
    }
    Ok((order, map))
}

pub fn run(a: &ReportArgs) -> Result<()> {
    print!("{}", render(a)?);
    Ok(())
}

fn cell(v: Option<f64>) -> String {
    v.map(fmt_num).unwrap_or_else(|| "–".into())
}

pub fn render(a: &ReportArgs) -> Result<String> {
    let (mut order, ours) = by_label(&a.ours)?;
    let (ref_order, reference) = by_label(&a.reference)?;
    for l in ref_order {
        if !order.contains(&l) {
            order.push(l);
        }
    }
    if order.is_empty() {
        bail!("no records in --ours or --reference");
    }
    let mut out = String::new();
    for label in &order {
        let o = ours.get(label);
        let r = reference.get(label);
        let Some(any) = o.or(r) else { continue };
        out += &format!("### {label} (`{}`)\n\n", any.mode);
        out += "Method:\n\n";
        for line in any.method.lines() {
            out += &format!("> {line}\n");
        }
        out += &format!("\nParameters: `{}`\n\n", any.params);
        out += "| metric | unit | ours | reference | ours / reference | better |\n";
        out += "|---|---|---:|---:|---:|---|\n";
        // Metric names of either record, in record order.
        let mut names: Vec<(String, String, bool)> = Vec::new();
        for rec in [o, r].into_iter().flatten() {
            for m in &rec.summary {
                if !names.iter().any(|(n, _, _)| *n == m.name) {
                    names.push((m.name.clone(), m.unit.clone(), m.higher_is_better));
                }
            }
        }
        for (name, unit, higher) in names {
            let get = |rec: Option<&Record>| {
                rec.and_then(|r| r.summary.iter().find(|m| m.name == name))
                    .and_then(|m| m.value)
            };
            let (ov, rv) = (get(o), get(r));
            let ratio = match (ov, rv) {
                (Some(x), Some(y)) if y != 0.0 => format!("{:.2}", x / y),
                _ => "–".into(),
            };
            out += &format!(
                "| {name} | {unit} | {} | {} | {ratio} | {} |\n",
                cell(ov),
                cell(rv),
                if higher { "higher" } else { "lower" }
            );
        }
        out += "\n";
        for (who, rec) in [("ours", o), ("reference", r)] {
            if let Some(rec) = rec {
                out += &steps_table(who, rec);
            }
        }
    }
    Ok(out)
}

/// Per-step lines of pub/sub runs with more than one step (ramps).
fn steps_table(who: &str, rec: &Record) -> String {
    let Some(steps) = rec.details.get("steps").and_then(Value::as_array) else {
        return String::new();
    };
    let ramp_len = rec
        .params
        .get("ramp")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if ramp_len < 2 || steps.is_empty() || steps[0].get("latency").is_none() {
        return String::new();
    }
    let f = |v: &Value, path: &[&str]| -> String {
        let mut cur = v;
        for p in path {
            match cur.get(p) {
                Some(x) => cur = x,
                None => return "–".into(),
            }
        }
        cur.as_f64().map(fmt_num).unwrap_or_else(|| "–".into())
    };
    let mut out = format!(
        "Steps ({who}):\n\n| target pub/s | achieved pub/s | delivered % | deliveries/s | p50 ms | p99 ms | max ms | server CPU us/delivery | of it kernel % | client CPU % | verdict |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
    );
    for s in steps {
        let pct = s
            .get("delivered_ratio")
            .and_then(Value::as_f64)
            .map(|x| fmt_num(x * 100.0))
            .unwrap_or_else(|| "–".into());
        out += &format!(
            "| {} | {} | {pct} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            f(s, &["target_rate"]),
            f(s, &["achieved_publish_rate"]),
            f(s, &["deliveries_per_sec"]),
            f(s, &["latency", "p50_ms"]),
            f(s, &["latency", "p99_ms"]),
            f(s, &["latency", "max_ms"]),
            f(s, &["server_cpu_us_per_delivery"]),
            f(s, &["server_kernel_pct"]),
            f(s, &["client_cpu_pct_of_core"]),
            s.get("verdict").and_then(Value::as_str).unwrap_or("")
        );
    }
    out + "\n"
}
