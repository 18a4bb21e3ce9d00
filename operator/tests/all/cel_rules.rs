//! The CRD's CEL rules (evaluated client-side with kube's `cel` feature, as an API server >= 1.25
//! would) and the Rust validation agree on every case. Old API servers, such as the 1.20 one the
//! end-to-end tests use, drop CEL rules silently, so this is where the rules are really tested.

use kube::core::cel::Validator;
use serde_json::{Value, json};
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

/// (what, spec patch, number of broken rules)
fn cases() -> Vec<(&'static str, Value, usize)> {
    let managed = json!({"managed": {}});
    let managed_cluster = json!({"mode": "cluster", "managed": {}});
    vec![
        ("single local node", json!({}), 0),
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
