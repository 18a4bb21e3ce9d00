//! Pusher-compatible realtime server (protocol 7), single node with pluggable backends.

pub mod adapter;
pub mod apps;
pub mod auth;
pub mod cache;
pub mod channel;
pub mod connection;
pub mod delta;
pub mod drivers;
pub mod health;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod nats_backend;
mod prefetch;
pub mod protocol;
pub mod rate_limit;
pub mod redis_backend;
pub mod server;
pub mod shutdown;
pub mod socket_id;
pub mod state;
pub mod webhooks;

pub use server::{RunningServer, StartError, start};
