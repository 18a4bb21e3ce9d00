//! Every example is a valid SockudoCluster: it parses, passes client-side validation, the CRD's
//! openAPIV3Schema and the CRD's own CEL rules.

use kube::core::cel::Validator;
use sockudo_operator::crd::generate::open_api_schema;
use sockudo_operator::validate::validate;

use super::support::{Example, documents, example_names};

#[test]
fn there_is_one_example_per_seed_config_and_backend_variant() {
    let names = example_names();
    for expected in [
        "1-single-node.yaml",
        "2-multi-node-redis.yaml",
        "3-multi-node-full-sharing.yaml",
        "4-multi-node-nats.yaml",
        "5-redis-cluster.yaml",
        "redis-managed.yaml",
        "redis-external.yaml",
        "redis-cluster-managed.yaml",
        "redis-cluster-external.yaml",
        "nats-managed.yaml",
        "nats-external.yaml",
    ] {
        assert!(names.iter().any(|n| n == expected), "missing {expected}");
    }
}

#[test]
fn every_example_passes_client_side_validation() {
    for name in example_names() {
        let example = Example::load(&name);
        let errors = validate(&example.cluster.spec);
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
}

#[test]
fn every_example_matches_the_crd_schema() {
    let schema = open_api_schema();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    for name in example_names() {
        for doc in documents(&name)
            .into_iter()
            .filter(|d| d["kind"] == "SockudoCluster")
        {
            let errors: Vec<String> = validator
                .iter_errors(&doc)
                .map(|e| format!("{} at {}", e, e.instance_path))
                .collect();
            assert!(errors.is_empty(), "{name}: {errors:#?}");
        }
    }
}

#[test]
fn every_example_passes_the_crds_cel_rules() {
    let schema = open_api_schema();
    for name in example_names() {
        for doc in documents(&name)
            .into_iter()
            .filter(|d| d["kind"] == "SockudoCluster")
        {
            if let Err(errors) = Validator::new().validate(&schema, &doc, None) {
                panic!("{name}: {:?}", errors.into_vec());
            }
        }
    }
}

#[test]
fn the_schema_rejects_a_wrong_driver() {
    let schema = open_api_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut doc = documents("2-multi-node-redis.yaml")
        .into_iter()
        .find(|d| d["kind"] == "SockudoCluster")
        .unwrap();
    doc["spec"]["adapter"]["driver"] = "kafka".into();
    assert!(!validator.is_valid(&doc));
}
