//! Connection options for NATS, shared by the `nats` adapter and the NATS KV delta coordinator
//! so that `nats.*` credentials and TLS mean the same for both.

use std::path::PathBuf;
use std::time::Duration;

use sockudo_config::{NatsConfig, read_secret};

#[derive(Debug, thiserror::Error)]
pub enum NatsConfigError {
    #[error("invalid nats configuration: {0}")]
    Invalid(String),
}

fn invalid(e: impl std::fmt::Display) -> NatsConfigError {
    NatsConfigError::Invalid(e.to_string())
}

/// Options with the configured credentials (`username`/`password[_file]`, `token[_file]`,
/// `credentials_file`) and TLS (`tls.ca_file`, client certificate for mutual TLS), named
/// `sockudo-{name}`. Reconnection policy is left to the caller.
pub async fn connect_options(
    n: &NatsConfig,
    name: &str,
) -> Result<async_nats::ConnectOptions, NatsConfigError> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(format!("sockudo-{name}"))
        .connection_timeout(Duration::from_millis(n.connection_timeout_ms.max(100)));
    if let Some(path) = &n.credentials_file {
        opts = opts
            .credentials_file(path)
            .await
            .map_err(|e| invalid(format!("nats.credentials_file {path}: {e}")))?;
    }
    let password = read_secret(
        "nats.password",
        n.password.as_deref(),
        n.password_file.as_deref(),
    )
    .map_err(invalid)?;
    match (&n.username, password) {
        (Some(user), password) => {
            opts = opts.user_and_password(user.clone(), password.unwrap_or_default());
        }
        (None, Some(_)) => return Err(invalid("nats.password is set without nats.username")),
        (None, None) => {}
    }
    if let Some(token) =
        read_secret("nats.token", n.token.as_deref(), n.token_file.as_deref()).map_err(invalid)?
    {
        opts = opts.token(token);
    }
    if let Some(tls) = n.tls.as_ref().filter(|t| t.enabled) {
        if tls.insecure_skip_verify {
            // Never silently ignored: the NATS client has no switch for it.
            return Err(invalid(
                "nats.tls.insecure_skip_verify is not supported; set nats.tls.ca_file to the test CA",
            ));
        }
        opts = opts.require_tls(true);
        if let Some(ca) = &tls.ca_file {
            std::fs::metadata(ca).map_err(|e| invalid(format!("nats.tls.ca_file {ca}: {e}")))?;
            opts = opts.add_root_certificates(PathBuf::from(ca));
        }
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => {
                opts = opts.add_client_certificate(PathBuf::from(cert), PathBuf::from(key));
            }
            (None, None) => {}
            _ => {
                return Err(invalid(
                    "nats.tls.cert_file and nats.tls.key_file go together",
                ));
            }
        }
    }
    Ok(opts)
}

/// Which configured credentials a connection presents, as ` (credentials from ...)`: the
/// server's "authorization violation" does not say which secret it refused. Empty without any.
pub fn credentials_hint(n: &NatsConfig) -> String {
    let mut used = Vec::new();
    if let Some(path) = &n.credentials_file {
        used.push(format!("nats.credentials_file {path}"));
    }
    if let Some(user) = &n.username {
        used.push(format!("nats.username {user}"));
    }
    match (&n.token, &n.token_file) {
        (_, Some(path)) => used.push(format!("nats.token_file {path}")),
        (Some(_), None) => used.push("nats.token".into()),
        (None, None) => {}
    }
    if used.is_empty() {
        return String::new();
    }
    format!(" (credentials from {})", used.join(", "))
}

/// A connection error with its causes (each added once: the client's error already shows its
/// direct source, not always the deeper ones, e.g. which certificate check failed) and, when
/// the server refused the credentials, which ones.
pub fn describe(e: &async_nats::ConnectError, n: &NatsConfig) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    match e.kind() {
        async_nats::ConnectErrorKind::AuthorizationViolation => {
            format!("{text}{}", credentials_hint(n))
        }
        _ => text,
    }
}
