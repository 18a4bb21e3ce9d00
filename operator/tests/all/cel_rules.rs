//! The CRD's CEL rules (evaluated client-side with kube's `cel` feature, as an API server >= 1.25
//! would) and the Rust validation agree on every case. Old API servers, such as the 1.20 one the
//! end-to-end tests use, drop CEL rules silently, so this is where the rules are really tested.

use kube::core::cel::Validator;
use serde_json::{Value, json};
use sockudo_operator::build::server_config::render;
use sockudo_operator::build::{Capabilities, Inputs, SecretData};
use sockudo_operator::crd::SockudoCluster;
use sockudo_operator::crd::generate::open_api_schema;
use sockudo_operator::validate::validate;

fn base() -> Value {
    json!({
        "apiVersion": "sockudo.io/v1alpha1",
        "kind": "SockudoCluster",
        "metadata": {"name": "t", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "apps": [{"id": "1", "secretRef": {"name": "s"}}]
        }
    })
}

fn with(spec_patch: Value) -> Value {
    let mut doc = base();
    let spec = doc["spec"].as_object_mut().unwrap();
    for (k, v) in spec_patch.as_object().unwrap() {
        spec.insert(k.clone(), v.clone());
    }
    doc
}

fn cel_messages(doc: &Value) -> Vec<String> {
    let mut messages: Vec<String> = match Validator::new().validate(&open_api_schema(), doc, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec().into_iter().map(|e| e.message).collect(),
    };
    messages.sort();
    messages
}

fn rust_messages(doc: &Value) -> Vec<String> {
    let cluster: SockudoCluster = serde_json::from_value(doc.clone()).unwrap();
    let mut messages: Vec<String> = validate(&cluster.spec)
        .into_iter()
        .map(|e| e.message)
        .collect();
    messages.sort();
    messages
}

/// A NATS adapter on an external NATS whose `secretRef` has `keys`.
fn nats_secret(keys: Value) -> Value {
    let mut secret = json!({"name": "nats-credentials"});
    for (k, v) in keys.as_object().unwrap() {
        secret[k] = v.clone();
    }
    json!({"replicas": 2, "adapter": {"driver": "nats"},
           "nats": {"external": {"servers": ["nats://a:4222"], "secretRef": secret}}})
}

/// (what, spec patch, number of broken rules)
fn cases() -> Vec<(&'static str, Value, usize)> {
    let managed = json!({"managed": {}});
    let managed_cluster = json!({"mode": "cluster", "managed": {}});
    vec![
        ("single local node", json!({}), 0),
        (
            "a NATS token key on an external Redis",
            json!({"replicas": 3, "adapter": {"driver": "redis"},
                   "redis": {"external": {"host": "r", "secretRef": {"name": "s", "tokenKey": "t"}}}}),
            1,
        ),
        (
            "a .creds key on an external Redis Cluster cache",
            json!({"cache": {"driver": "redis-cluster", "redis": {"mode": "cluster",
                   "external": {"nodes": ["r:6379"], "secretRef": {"name": "s", "credentialsKey": "c"}}}}}),
            1,
        ),
        (
            "username and password on an external Redis",
            json!({"replicas": 3, "adapter": {"driver": "redis"},
                   "redis": {"external": {"host": "r", "secretRef": {"name": "s", "usernameKey": "u", "passwordKey": "p"}}}}),
            0,
        ),
        (
            "two managed Redis Clusters",
            json!({"replicas": 3, "adapter": {"driver": "redis-cluster"}, "redis": managed_cluster,
                   "cache": {"driver": "redis-cluster", "redis": managed_cluster}}),
            1,
        ),
        (
            "three managed Redis Clusters",
            json!({"replicas": 3, "adapter": {"driver": "redis-cluster"}, "redis": managed_cluster,
                   "cache": {"driver": "redis-cluster", "redis": managed_cluster},
                   "rateLimiter": {"driver": "redis-cluster", "redis": managed_cluster}}),
            1,
        ),
        (
            "one managed Redis Cluster shared by cache and limiter",
            json!({"replicas": 3, "adapter": {"driver": "redis-cluster"}, "redis": managed_cluster,
                   "cache": {"driver": "redis-cluster"},
                   "rateLimiter": {"driver": "redis-cluster"}}),
            0,
        ),
        (
            "a managed Redis Cluster and a managed standalone Redis",
            json!({"replicas": 3, "adapter": {"driver": "redis-cluster"}, "redis": managed_cluster,
                   "cache": {"driver": "redis", "redis": managed}}),
            0,
        ),
        ("local with 3 replicas", json!({"replicas": 3}), 1),
        (
            "local with autoscaling",
            json!({"autoscaling": {"minReplicas": 1, "maxReplicas": 3}}),
            1,
        ),
        (
            "redis adapter without redis",
            json!({"replicas": 3, "adapter": {"driver": "redis"}}),
            1,
        ),
        (
            "redis adapter on a cluster",
            json!({"replicas": 3, "adapter": {"driver": "redis"}, "redis": managed_cluster}),
            1,
        ),
        (
            "redis-cluster adapter on standalone",
            json!({"replicas": 3, "adapter": {"driver": "redis-cluster"}, "redis": managed}),
            1,
        ),
        (
            "redis adapter on managed redis",
            json!({"replicas": 3, "adapter": {"driver": "redis"}, "redis": managed}),
            0,
        ),
        (
            "nats adapter without nats",
            json!({"replicas": 3, "adapter": {"driver": "nats"}}),
            1,
        ),
        (
            "coordination on local",
            json!({"deltaCompression": {"clusterCoordination": true}}),
            1,
        ),
        (
            "coordination on nats",
            json!({"replicas": 2, "adapter": {"driver": "nats"}, "nats": {"managed": {}},
                   "deltaCompression": {"clusterCoordination": true}}),
            0,
        ),
        (
            "cache on redis without redis",
            json!({"cache": {"driver": "redis"}}),
            1,
        ),
        (
            "cache redis-cluster on own standalone",
            json!({"cache": {"driver": "redis-cluster", "redis": managed}}),
            1,
        ),
        (
            "cache redis on own redis",
            json!({"cache": {"driver": "redis", "redis": managed}}),
            0,
        ),
        (
            "limiter redis with only a cluster",
            json!({"replicas": 3, "adapter": {"driver": "redis-cluster"}, "redis": managed_cluster,
                   "rateLimiter": {"driver": "redis"}}),
            1,
        ),
        (
            "limiter redis on the cache's redis",
            json!({"cache": {"driver": "redis", "redis": managed}, "rateLimiter": {"driver": "redis"}}),
            0,
        ),
        (
            "disabled limiter on redis needs nothing",
            json!({"rateLimiter": {"enabled": false, "driver": "redis"}}),
            0,
        ),
        (
            "limiter redis-cluster without any",
            json!({"rateLimiter": {"driver": "redis-cluster"}}),
            1,
        ),
        (
            "managed and external",
            json!({"replicas": 3, "adapter": {"driver": "redis"},
                   "redis": {"managed": {}, "external": {"host": "h"}}}),
            1,
        ),
        (
            "neither managed nor external",
            json!({"replicas": 3, "adapter": {"driver": "redis"}, "redis": {}}),
            1,
        ),
        (
            "managed cluster with 2 masters",
            json!({"replicas": 3, "adapter": {"driver": "redis-cluster"},
                   "redis": {"mode": "cluster", "managed": {"masters": 2}}}),
            1,
        ),
        (
            "external cluster given by host",
            json!({"replicas": 3, "adapter": {"driver": "redis-cluster"},
                   "redis": {"mode": "cluster", "external": {"host": "h"}}}),
            1,
        ),
        (
            "external standalone with url and host",
            json!({"replicas": 3, "adapter": {"driver": "redis"},
                   "redis": {"external": {"host": "h", "url": "redis://h:1"}}}),
            1,
        ),
        (
            "external cluster by nodes",
            json!({"replicas": 3, "adapter": {"driver": "redis-cluster"},
                   "redis": {"mode": "cluster", "external": {"nodes": ["a:1"]}}}),
            0,
        ),
        (
            "nats managed and external",
            json!({"replicas": 3, "adapter": {"driver": "nats"},
                   "nats": {"managed": {}, "external": {"servers": ["nats://a:4222"]}}}),
            1,
        ),
        (
            "nats external with user and password",
            nats_secret(json!({"usernameKey": "u", "passwordKey": "p"})),
            0,
        ),
        (
            "nats external with only a user",
            nats_secret(json!({"usernameKey": "u"})),
            0,
        ),
        (
            "nats external with a token",
            nats_secret(json!({"tokenKey": "t"})),
            0,
        ),
        (
            "nats external with a .creds file",
            nats_secret(json!({"credentialsKey": "c"})),
            0,
        ),
        (
            "nats external secret without keys",
            nats_secret(json!({})),
            0,
        ),
        (
            "nats token and user",
            nats_secret(json!({"tokenKey": "t", "usernameKey": "u"})),
            1,
        ),
        (
            "nats token and password without user",
            nats_secret(json!({"tokenKey": "t", "passwordKey": "p"})),
            2,
        ),
        (
            "nats .creds and user and password",
            nats_secret(json!({"credentialsKey": "c", "usernameKey": "u", "passwordKey": "p"})),
            1,
        ),
        (
            "nats .creds and token",
            nats_secret(json!({"credentialsKey": "c", "tokenKey": "t"})),
            1,
        ),
        (
            "nats password without user",
            nats_secret(json!({"passwordKey": "p"})),
            1,
        ),
        (
            "autoscaling min above max",
            json!({"replicas": 3, "adapter": {"driver": "nats"}, "nats": {"managed": {}},
                   "autoscaling": {"minReplicas": 5, "maxReplicas": 3}}),
            1,
        ),
        (
            "cache own redis with managed and external",
            json!({"cache": {"driver": "redis", "redis": {"managed": {}, "external": {"host": "h"}}}}),
            1,
        ),
    ]
}

#[test]
fn cel_and_rust_agree() {
    for (what, patch, broken) in cases() {
        let doc = with(patch);
        let cel = cel_messages(&doc);
        let rust = rust_messages(&doc);
        assert_eq!(cel, rust, "{what}: CEL and Rust disagree");
        assert_eq!(cel.len(), broken, "{what}: {cel:?}");
    }
}

#[test]
fn messages_are_clear() {
    let doc = with(json!({"replicas": 3}));
    let messages = cel_messages(&doc);
    assert!(messages[0].contains("replicas > 1"), "{messages:?}");
}

/// The CRD's NATS credentials rules and the server config's agree: every `secretRef` the CRD
/// accepts renders a server config that validates, and every one it refuses would render a
/// config the server refuses (so a cluster without CEL still never starts half-authenticated).
#[test]
fn nats_secret_rules_match_the_server_config() {
    let keys = ["usernameKey", "passwordKey", "tokenKey", "credentialsKey"];
    let data: SecretData = ["u", "p", "t", "c"]
        .iter()
        .map(|k| (k.to_string(), format!("value-{k}").into_bytes()))
        .collect();
    let secrets = [("nats-credentials".to_string(), data)].into();
    let generated = Default::default();
    let mut accepted = Vec::new();
    // Every subset of the four keys.
    for mask in 0..16u8 {
        let mut set = serde_json::Map::new();
        for (i, key) in keys.iter().enumerate() {
            if mask & (1 << i) != 0 {
                set.insert(key.to_string(), json!(&key[..1]));
            }
        }
        let doc = with(nats_secret(Value::Object(set.clone())));
        let cel = cel_messages(&doc);
        assert_eq!(cel, rust_messages(&doc), "{set:?}: CEL and Rust disagree");
        let cluster: SockudoCluster = serde_json::from_value(doc).unwrap();
        let config = render(&Inputs {
            cluster: &cluster,
            secrets: &secrets,
            generated: &generated,
            capabilities: Capabilities::ALL,
        });
        let server = config.validate();
        assert_eq!(
            cel.is_empty(),
            server.is_empty(),
            "{set:?}: CRD says {cel:?}, server config says {server:?}"
        );
        if cel.is_empty() {
            accepted.push(set.keys().cloned().collect::<Vec<_>>().join("+"));
        }
    }
    // No keys, a user, user + password, a token, a .creds file.
    assert_eq!(
        accepted,
        [
            "",
            "usernameKey",
            "passwordKey+usernameKey",
            "tokenKey",
            "credentialsKey"
        ],
        "accepted modes"
    );
}
