//! Parsing frames sent by clients. Every failure is a [`FrameError`] with a message fit to send
//! back in a `pusher:error`; nothing here panics on hostile input.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The envelope of every client frame. `data` stays raw so client events are forwarded verbatim.
#[derive(Debug, Deserialize)]
pub struct ClientFrame<'a> {
    #[serde(borrow)]
    pub event: Cow<'a, str>,
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub channel: Option<Cow<'a, str>>,
}

/// `pusher:subscribe` data. Strings are kept exactly as sent: signatures cover them verbatim.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct SubscribeRequest {
    pub channel: String,
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub channel_data: Option<String>,
    /// Per-subscription delta setting (see `delta::wire::SubscriptionDelta`).
    #[serde(default)]
    pub delta: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct EnableDeltaData {
    #[serde(default)]
    algorithm: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UnsubscribeData {
    channel: String,
}

#[derive(Debug, Deserialize)]
struct SigninData {
    user_data: String,
    auth: String,
}

/// A decoded client frame.
#[derive(Debug)]
pub enum ClientMessage<'a> {
    Ping,
    Pong,
    Subscribe(SubscribeRequest),
    Unsubscribe {
        channel: String,
    },
    Signin {
        user_data: String,
        auth: String,
    },
    /// `client-*` event to forward: `data` is passed on as sent.
    ClientEvent {
        event: Cow<'a, str>,
        channel: Cow<'a, str>,
        data: &'a RawValue,
    },
    /// `pusher:enable_delta_compression`, optionally naming an algorithm.
    EnableDelta {
        algorithm: Option<String>,
    },
    /// `pusher:delta_sync_error`: the client could not apply a delta on this channel.
    DeltaSyncError {
        channel: String,
    },
    /// Any other event: ignored, as Pusher does.
    Other(Cow<'a, str>),
}

/// Why a frame was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("invalid JSON frame: {0}")]
    InvalidJson(String),
    #[error("invalid data for {event}: {reason}")]
    InvalidData { event: &'static str, reason: String },
    #[error("client event {0:?} has no channel")]
    ClientEventWithoutChannel(String),
}

/// `data` may be an object or (as some clients send it) a JSON string holding one.
fn decode_data<'de, T: Deserialize<'de>>(
    event: &'static str,
    raw: Option<&'de RawValue>,
) -> Result<T, FrameError> {
    let invalid = |reason: String| FrameError::InvalidData { event, reason };
    let raw = raw.ok_or_else(|| invalid("missing `data`".into()))?;
    let text = raw.get();
    if text.starts_with('"') {
        let inner: String = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        // The inner text is owned by this frame only; deserialise into owned types.
        let value: serde_json::Value =
            serde_json::from_str(&inner).map_err(|e| invalid(e.to_string()))?;
        return T::deserialize(value).map_err(|e| invalid(e.to_string()));
    }
    serde_json::from_str(text).map_err(|e| invalid(e.to_string()))
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<ClientMessage<'_>, FrameError> {
    let frame: ClientFrame<'_> = serde_json::from_str(text).map_err(|e| {
        let mut msg = e.to_string();
        msg.truncate(200);
        FrameError::InvalidJson(msg)
    })?;
    Ok(match frame.event.as_ref() {
        "pusher:ping" => ClientMessage::Ping,
        "pusher:pong" => ClientMessage::Pong,
        "pusher:subscribe" => {
            ClientMessage::Subscribe(decode_data("pusher:subscribe", frame.data)?)
        }
        "pusher:unsubscribe" => {
            let d: UnsubscribeData = decode_data("pusher:unsubscribe", frame.data)?;
            ClientMessage::Unsubscribe { channel: d.channel }
        }
        "pusher:signin" => {
            let d: SigninData = decode_data("pusher:signin", frame.data)?;
            ClientMessage::Signin {
                user_data: d.user_data,
                auth: d.auth,
            }
        }
        "pusher:enable_delta_compression" => {
            // `data` is optional (`{}` or absent); a malformed one is an error like elsewhere.
            let d: EnableDeltaData = match frame.data {
                None => EnableDeltaData::default(),
                Some(raw) if raw.get() == "null" => EnableDeltaData::default(),
                raw => decode_data("pusher:enable_delta_compression", raw)?,
            };
            ClientMessage::EnableDelta {
                algorithm: d.algorithm,
            }
        }
        "pusher:delta_sync_error" => {
            let d: UnsubscribeData = decode_data("pusher:delta_sync_error", frame.data)?;
            ClientMessage::DeltaSyncError { channel: d.channel }
        }
        e if e.starts_with("client-") => {
            let Some(channel) = frame.channel else {
                return Err(FrameError::ClientEventWithoutChannel(truncate(e)));
            };
            let data = frame.data.unwrap_or_else(|| null_raw());
            ClientMessage::ClientEvent {
                event: frame.event,
                channel,
                data,
            }
        }
        _ => ClientMessage::Other(frame.event),
    })
}

fn null_raw() -> &'static RawValue {
    static NULL: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    NULL.get_or_init(|| RawValue::from_string("null".into()).expect("null is JSON"))
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_object_and_string_data() {
        let m =
            parse(r#"{"event":"pusher:subscribe","data":{"channel":"a","auth":"k:s"}}"#).unwrap();
        let ClientMessage::Subscribe(s) = m else {
            panic!()
        };
        assert_eq!(s.channel, "a");
        assert_eq!(s.auth.as_deref(), Some("k:s"));
        let m = parse(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"b\"}"}"#).unwrap();
        let ClientMessage::Subscribe(s) = m else {
            panic!()
        };
        assert_eq!(s.channel, "b");
    }

    #[test]
    fn channel_data_is_verbatim() {
        let cd = r#"{"user_id": 10, "user_info": {"name": "x"}}"#;
        let frame = serde_json::json!({"event":"pusher:subscribe","data":{"channel":"presence-a","auth":"k:s","channel_data":cd}}).to_string();
        let ClientMessage::Subscribe(s) = parse(&frame).unwrap() else {
            panic!()
        };
        assert_eq!(s.channel_data.as_deref(), Some(cd));
    }

    #[test]
    fn client_event_keeps_raw_data() {
        let m = parse(r#"{"event":"client-x","channel":"private-a","data":{"b": 1}}"#).unwrap();
        let ClientMessage::ClientEvent { data, channel, .. } = m else {
            panic!()
        };
        assert_eq!(data.get(), r#"{"b": 1}"#);
        assert_eq!(channel, "private-a");
    }

    #[test]
    fn malformed_frames_are_errors() {
        for bad in [
            "",
            "{",
            "[]",
            "null",
            r#"{"data":1}"#,
            r#"{"event":5}"#,
            "\u{0}",
        ] {
            assert!(
                matches!(parse(bad), Err(FrameError::InvalidJson(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse(r#"{"event":"pusher:subscribe","data":{}}"#),
            Err(FrameError::InvalidData { .. })
        ));
        assert!(matches!(
            parse(r#"{"event":"pusher:subscribe"}"#),
            Err(FrameError::InvalidData { .. })
        ));
        assert!(matches!(
            parse(r#"{"event":"client-a","data":{}}"#),
            Err(FrameError::ClientEventWithoutChannel(_))
        ));
        assert!(matches!(
            parse(r#"{"event":"other"}"#),
            Ok(ClientMessage::Other(_))
        ));
    }
}
