//! Real backing services for tests: `redis-server`, a Redis Cluster made with
//! `redis-cli --cluster create`, and `nats-server` with JetStream, each on free loopback ports in
//! its own temporary directory. Every process is killed when its handle drops.
//!
//! TLS (a throwaway CA made with `openssl`) and credentials (passwords, ACL users, tokens, NATS
//! operator-mode JWTs and `.creds` files) are opt-in per server.
//!
//! A missing binary is an error that says how to install it: tests fail, they never skip.

mod nats;
mod nats_jwt;
mod process;
mod redis;
mod tls;

pub use nats::{NatsAuth, NatsServer, NatsSetup};
pub use nats_jwt::NatsOperator;
pub use process::{BackendError, free_port};
pub use redis::{ClientAuth, RedisCluster, RedisServer, RedisSetup, free_cluster_port};
pub use tls::TestCa;
