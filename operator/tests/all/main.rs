//! The operator's integration tests, in one binary to keep link time down on small machines.

mod backend_configs;
mod budgets;
mod cel_rules;
mod claim_retention;
mod crd_drift;
mod examples;
mod images;
mod redis_cluster_bootstrap;
mod redis_cluster_fixture;
mod redis_cluster_new_addresses;
mod redis_cluster_replicas;
mod redis_cluster_scaling;
mod seed_equivalence;
mod snapshots;
mod support;
