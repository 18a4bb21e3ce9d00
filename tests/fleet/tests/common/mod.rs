//! Shared by the integration tests: the repository, its examples, and the server binary.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use sockudo_fleet::Manifest;

pub mod delta;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn example_path(file: &str) -> PathBuf {
    repo_root().join("operator/examples").join(file)
}

pub fn example(file: &str) -> Manifest {
    Manifest::from_file(&example_path(file)).unwrap()
}

/// The sockudo binary of this checkout: SOCKUDO_BIN, or built here once per test binary (a no-op
/// when fresh; it also rebuilds when another checkout sharing the target dir replaced it).
pub fn server_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("SOCKUDO_BIN") {
            return p.into();
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["build", "-p", "sockudo-server", "--bin", "sockudo"])
            .arg("--message-format=json-render-diagnostics")
            .current_dir(repo_root())
            .output()
            .expect("cargo runs");
        assert!(
            out.status.success(),
            "building the server failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "sockudo")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reports the sockudo executable")
    })
    .clone()
}
