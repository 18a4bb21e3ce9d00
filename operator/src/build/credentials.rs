//! How backend credentials reach the server: Secrets mounted as files, referenced from the
//! rendered config with `*_file` keys. Never inline in the ConfigMap (the one exception is a
//! username, which the config schema takes inline and which is not a secret).

use sockudo_config::TlsConfig;

use super::inputs::Inputs;
use super::topology::RedisInstance;
use crate::crd::{BackendSecretRef, NatsSpec, TlsSpec};

/// Root of every backend credential in the server container.
pub const BACKENDS_DIR: &str = "/etc/sockudo/backends";
/// Root of every backend TLS file in the server container.
pub const TLS_DIR: &str = "/etc/sockudo/tls";

/// One Secret mounted into the server pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMount {
    pub volume: String,
    pub secret: String,
    pub dir: String,
    /// Secret key to file name.
    pub items: Vec<(String, String)>,
}

/// A backend's credentials as config keys plus the mounts that make the files exist.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Credentials {
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub token_file: Option<String>,
    pub credentials_file: Option<String>,
    pub tls: Option<TlsConfig>,
    pub mounts: Vec<SecretMount>,
}

fn secret_credentials(
    slug: &str,
    secret: &BackendSecretRef,
    default_password_key: Option<&str>,
    inputs: &Inputs,
) -> Credentials {
    let dir = format!("{BACKENDS_DIR}/{slug}");
    let mut items = Vec::new();
    let mut creds = Credentials {
        username: secret
            .username_key
            .as_deref()
            .and_then(|k| inputs.secret_value(&secret.name, k)),
        ..Credentials::default()
    };
    if let Some(key) = secret.password_key.as_deref().or(default_password_key) {
        items.push((key.to_string(), "password".to_string()));
        creds.password_file = Some(format!("{dir}/password"));
    }
    if let Some(key) = &secret.token_key {
        items.push((key.clone(), "token".to_string()));
        creds.token_file = Some(format!("{dir}/token"));
    }
    if let Some(key) = &secret.credentials_key {
        items.push((key.clone(), "nats.creds".to_string()));
        creds.credentials_file = Some(format!("{dir}/nats.creds"));
    }
    if !items.is_empty() {
        creds.mounts.push(SecretMount {
            volume: format!("backend-{slug}"),
            secret: secret.name.clone(),
            dir,
            items,
        });
    }
    creds
}

fn tls(slug: &str, tls: Option<&TlsSpec>, creds: &mut Credentials) {
    let Some(spec) = tls else { return };
    let mut config = TlsConfig {
        enabled: spec.is_enabled(),
        insecure_skip_verify: spec.insecure_skip_verify.unwrap_or(false),
        ..TlsConfig::default()
    };
    if let Some(ca) = &spec.ca_secret {
        let dir = format!("{TLS_DIR}/{slug}-ca");
        config.ca_file = Some(format!("{dir}/ca.crt"));
        creds.mounts.push(SecretMount {
            volume: format!("tls-{slug}-ca"),
            secret: ca.clone(),
            dir,
            items: vec![("ca.crt".into(), "ca.crt".into())],
        });
    }
    if let Some(client) = &spec.client_cert_secret {
        let dir = format!("{TLS_DIR}/{slug}-client");
        config.cert_file = Some(format!("{dir}/tls.crt"));
        config.key_file = Some(format!("{dir}/tls.key"));
        creds.mounts.push(SecretMount {
            volume: format!("tls-{slug}-client"),
            secret: client.clone(),
            dir,
            items: vec![
                ("tls.crt".into(), "tls.crt".into()),
                ("tls.key".into(), "tls.key".into()),
            ],
        });
    }
    creds.tls = Some(config);
}

/// Credentials of a Redis section: the generated password of a managed one, or the referenced
/// Secret and TLS of an external one.
pub fn redis(instance: &RedisInstance, inputs: &Inputs) -> Credentials {
    let slug = instance.role.slug();
    if instance.is_managed() {
        let dir = format!("{BACKENDS_DIR}/{slug}");
        return Credentials {
            password_file: Some(format!("{dir}/password")),
            mounts: vec![SecretMount {
                volume: format!("backend-{slug}"),
                secret: instance.auth_secret(inputs.cluster),
                dir,
                items: vec![("password".into(), "password".into())],
            }],
            ..Credentials::default()
        };
    }
    let external = instance.spec.external.as_ref();
    let mut creds = external
        .and_then(|e| e.secret_ref.as_ref())
        .map(|s| secret_credentials(slug, s, Some("password"), inputs))
        .unwrap_or_default();
    tls(slug, external.and_then(|e| e.tls.as_ref()), &mut creds);
    creds
}

/// Name of the generated token Secret of a managed NATS.
pub fn nats_auth_secret(cluster: &crate::crd::SockudoCluster) -> String {
    format!("{}-nats-auth", kube::ResourceExt::name_any(cluster))
}

/// Credentials of the NATS the adapter uses.
pub fn nats(spec: &NatsSpec, inputs: &Inputs) -> Credentials {
    if spec.managed.is_some() {
        let dir = format!("{BACKENDS_DIR}/nats");
        return Credentials {
            token_file: Some(format!("{dir}/token")),
            mounts: vec![SecretMount {
                volume: "backend-nats".into(),
                secret: nats_auth_secret(inputs.cluster),
                dir,
                items: vec![("token".into(), "token".into())],
            }],
            ..Credentials::default()
        };
    }
    let external = spec.external.as_ref();
    let mut creds = external
        .and_then(|e| e.secret_ref.as_ref())
        .map(|s| secret_credentials("nats", s, None, inputs))
        .unwrap_or_default();
    tls("nats", external.and_then(|e| e.tls.as_ref()), &mut creds);
    creds
}
