//! Everything that can stop a fleet from starting or running.

use std::path::PathBuf;

/// A typed error per failure, so tests can tell "the server does not support this yet" from a
/// broken manifest or a missing binary.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Manifest { origin: String, message: String },
    #[error("{origin}: the operator would refuse this SockudoCluster:\n  - {}", .errors.join("\n  - "))]
    Invalid { origin: String, errors: Vec<String> },
    #[error("the operator's builders did not produce {what}")]
    Render { what: String },
    #[error("cannot run locally: {0}")]
    Localize(String),
    #[error(
        "`{binary}` is not installed: run tests/setup/install-deps.sh (or `apt-get install -y {package}`)"
    )]
    MissingBinary {
        binary: &'static str,
        package: &'static str,
    },
    #[error(
        "the sockudo binary was not found (looked at {looked}): build it with `cargo build -p sockudo-server --bin sockudo`, or pass --sockudo PATH / set SOCKUDO_BIN"
    )]
    MissingServer { looked: String },
    #[error("the server rejected the rendered config: {message}")]
    ConfigRejected { message: String },
    #[error("no free port from {from}")]
    NoFreePort { from: u16 },
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} did not become ready within {secs} s; its last output:\n{log}")]
    NotReady {
        what: String,
        secs: u64,
        log: String,
    },
    #[error("{what} exited ({status}) while starting; its last output:\n{log}")]
    Exited {
        what: String,
        status: String,
        log: String,
    },
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("temporary files: {0}")]
    Io(#[from] std::io::Error),
}

impl FleetError {
    /// The server's own refusal of a config, in its words.
    pub fn from_server_message(message: &str) -> FleetError {
        FleetError::ConfigRejected {
            message: message.trim().to_string(),
        }
    }
}

pub type Result<T, E = FleetError> = std::result::Result<T, E>;
