//! Pusher error and close codes (protocol 7).

/// Codes sent in `pusher:error` frames and as WebSocket close codes. pusher-js decides whether to
/// reconnect from the range: 4000-4099 never, 4100-4199 with backoff, 4200-4299 at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    /// Malformed frame or other generic refusal (socket stays open).
    InvalidMessage = 4000,
    AppNotFound = 4001,
    AppDisabled = 4003,
    /// The app's connection quota is used up.
    OverQuota = 4004,
    /// Connection-level auth failed: origin refused, bad sign-in, sign-in timeout, terminated.
    Unauthorized = 4009,
    /// The node is full, a slow consumer overflowed its queue, or the client's address is over
    /// the WebSocket connect rate limit. 4100-4199 make pusher-js back off and reconnect; 4301
    /// (client events) would be a 43xx close, which pusher-js treats as refused for good.
    OverCapacity = 4100,
    /// Reconnect at once (graceful shutdown).
    Reconnect = 4200,
    PongNotReceived = 4201,
    /// Closed for inactivity.
    Inactive = 4202,
    /// Refused channel or event (name, limits).
    ChannelRefused = 4300,
    /// Client event refused or rate limited.
    ClientEventRefused = 4301,
}

impl ErrorCode {
    pub fn code(self) -> u16 {
        self as u16
    }
}

/// WebSocket close code for a frame larger than `websocket.max_payload_kb` (RFC 6455).
pub const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;
