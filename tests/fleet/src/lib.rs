//! Runs a `SockudoCluster` manifest on one machine, without Kubernetes: the server config comes
//! from the operator's own builders, managed Redis / Redis Cluster / NATS run as local
//! `redis-server` / `nats-server` processes with the configuration the operator generates, and
//! `spec.replicas` sockudo processes serve on free loopback ports.
//!
//! ```no_run
//! use sockudo_fleet::{Fleet, Manifest};
//! let manifest = Manifest::from_file("operator/examples/1-single-node.yaml".as_ref()).unwrap();
//! let fleet = Fleet::start(&manifest).unwrap();
//! println!("{} {}", fleet.ws_url(0), fleet.app(0).key);
//! ```

pub mod backends;
pub mod error;
pub mod fleet;
pub mod localize;
pub mod manifest;
pub mod plan;
pub mod ports;
pub mod process;
pub mod report;

pub use error::{FleetError, Result};
pub use fleet::{Fleet, Node, Options};
pub use manifest::Manifest;
pub use plan::{AppInfo, Plan};
