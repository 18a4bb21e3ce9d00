//! What a SockudoCluster reads and generates besides itself: the Secrets it references (which
//! must exist, with the keys named) and the credentials of managed backends (generated once).

use std::collections::BTreeSet;

use super::credentials::nats_auth_secret;
use super::topology::Topology;
use crate::crd::{SockudoCluster, TlsSpec};

/// A Secret key the spec points at.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretKeyRef {
    pub secret: String,
    pub key: String,
}

fn tls_refs(tls: Option<&TlsSpec>, out: &mut BTreeSet<SecretKeyRef>) {
    let Some(tls) = tls else { return };
    if let Some(ca) = &tls.ca_secret {
        out.insert(SecretKeyRef {
            secret: ca.clone(),
            key: "ca.crt".into(),
        });
    }
    if let Some(client) = &tls.client_cert_secret {
        for key in ["tls.crt", "tls.key"] {
            out.insert(SecretKeyRef {
                secret: client.clone(),
                key: key.into(),
            });
        }
    }
}

/// Every referenced Secret key of the parts of the spec in use.
pub fn referenced_secret_keys(cluster: &SockudoCluster) -> BTreeSet<SecretKeyRef> {
    let mut out = BTreeSet::new();
    for app in &cluster.spec.apps {
        let r = &app.secret_ref;
        for key in [r.key_key(), r.secret_key()] {
            out.insert(SecretKeyRef {
                secret: r.name.clone(),
                key: key.into(),
            });
        }
    }
    let topology = Topology::of(&cluster.spec);
    for instance in topology.used_redis() {
        let Some(external) = &instance.spec.external else {
            continue;
        };
        if let Some(s) = &external.secret_ref {
            let keys = [
                s.username_key.as_deref(),
                Some(s.password_key.as_deref().unwrap_or("password")),
            ];
            for key in keys.into_iter().flatten() {
                out.insert(SecretKeyRef {
                    secret: s.name.clone(),
                    key: key.into(),
                });
            }
        }
        tls_refs(external.tls.as_ref(), &mut out);
    }
    if let Some(external) = topology.nats.and_then(|n| n.external.as_ref()) {
        if let Some(s) = &external.secret_ref {
            let keys = [
                &s.username_key,
                &s.password_key,
                &s.token_key,
                &s.credentials_key,
            ];
            for key in keys.into_iter().flatten() {
                out.insert(SecretKeyRef {
                    secret: s.name.clone(),
                    key: key.clone(),
                });
            }
        }
        tls_refs(external.tls.as_ref(), &mut out);
    }
    out
}

/// The Secrets holding generated credentials of managed backends, with the key to read back.
pub fn generated_secrets(cluster: &SockudoCluster) -> Vec<SecretKeyRef> {
    let topology = Topology::of(&cluster.spec);
    let mut out: Vec<SecretKeyRef> = topology
        .used_redis()
        .iter()
        .filter(|i| i.is_managed())
        .map(|i| SecretKeyRef {
            secret: i.auth_secret(cluster),
            key: "password".into(),
        })
        .collect();
    if topology.nats.is_some_and(|n| n.managed.is_some()) {
        out.push(SecretKeyRef {
            secret: nats_auth_secret(cluster),
            key: "token".into(),
        });
    }
    out
}
