//! Kubernetes operator for SockudoCluster: the CRD, pure builders of every child object, and the
//! controller that applies them.

pub mod build;
pub mod controller;
pub mod crd;
pub mod rbac;
pub mod validate;
