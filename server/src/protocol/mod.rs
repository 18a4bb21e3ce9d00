//! The Pusher protocol's wire format: client frames in, server frames out.

pub mod client;
pub mod codes;
pub mod server;

pub use client::{ClientFrame, ClientMessage, FrameError, SubscribeRequest};
pub use codes::ErrorCode;
