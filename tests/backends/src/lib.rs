//! Real backing services for tests: `redis-server`, a Redis Cluster made with
//! `redis-cli --cluster create`, and `nats-server` with JetStream, each on free loopback ports in
//! its own temporary directory. Every process is killed when its handle drops.
//!
//! A missing binary is an error that says how to install it: tests fail, they never skip.

mod nats;
mod process;
mod redis;

pub use nats::NatsServer;
pub use process::{BackendError, free_port};
pub use redis::{RedisCluster, RedisServer};
