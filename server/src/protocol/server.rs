//! Building frames sent to clients. Each is serialised once and shared by every recipient.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::protocol::ErrorCode;

/// An event's `data`: a string (what the HTTP API carries) or raw JSON (client events).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(untagged)]
pub enum EventData<'a> {
    Str(&'a str),
    Raw(&'a RawValue),
}

#[derive(Serialize)]
struct Frame<'a, D: Serialize> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<D>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

fn frame<D: Serialize>(event: &str, channel: Option<&str>, data: Option<D>) -> String {
    serde_json::to_string(&Frame {
        event,
        channel,
        data,
        user_id: None,
    })
    .expect("frames serialise")
}

/// JSON text of `value`, to be sent as a string-encoded `data` (Pusher's convention).
fn json_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("data serialises")
}

pub fn connection_established(socket_id: &str, activity_timeout: u64) -> String {
    #[derive(Serialize)]
    struct D<'a> {
        socket_id: &'a str,
        activity_timeout: u64,
    }
    let data = json_text(&D {
        socket_id,
        activity_timeout,
    });
    frame("pusher:connection_established", None, Some(data))
}

pub fn error(code: ErrorCode, message: &str) -> String {
    #[derive(Serialize)]
    struct D<'a> {
        code: u16,
        message: &'a str,
    }
    frame(
        "pusher:error",
        None,
        Some(D {
            code: code.code(),
            message,
        }),
    )
}

pub const PONG: &str = r#"{"event":"pusher:pong","data":{}}"#;
pub const PING: &str = r#"{"event":"pusher:ping","data":{}}"#;

/// `pusher_internal:subscription_succeeded`; `presence_data` is the JSON text of `{presence:..}`.
pub fn subscription_succeeded(channel: &str, presence_data: Option<&str>) -> String {
    frame(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        Some(presence_data.unwrap_or("{}")),
    )
}

/// Refused subscription; pusher-js reports it to the app as `pusher:subscription_error`.
pub fn subscription_error(channel: &str, kind: &str, error: &str, status: u16) -> String {
    #[derive(Serialize)]
    struct D<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        error: &'a str,
        status: u16,
    }
    frame(
        "pusher:subscription_error",
        Some(channel),
        Some(D {
            kind,
            error,
            status,
        }),
    )
}

pub fn member_added(channel: &str, user_id: &str, user_info: &RawValue) -> String {
    #[derive(Serialize)]
    struct D<'a> {
        user_id: &'a str,
        user_info: &'a RawValue,
    }
    let data = json_text(&D { user_id, user_info });
    frame("pusher_internal:member_added", Some(channel), Some(data))
}

pub fn member_removed(channel: &str, user_id: &str) -> String {
    #[derive(Serialize)]
    struct D<'a> {
        user_id: &'a str,
    }
    let data = json_text(&D { user_id });
    frame("pusher_internal:member_removed", Some(channel), Some(data))
}

pub fn cache_miss(channel: &str) -> String {
    frame("pusher:cache_miss", Some(channel), Some("{}"))
}

pub fn signin_success(user_data: &str) -> String {
    #[derive(Serialize)]
    struct D<'a> {
        user_data: &'a str,
    }
    frame("pusher:signin_success", None, Some(D { user_data }))
}

/// An application event. `user_id` is set on client events in presence channels, as Pusher does.
pub fn event(name: &str, channel: &str, data: EventData<'_>, user_id: Option<&str>) -> String {
    serde_json::to_string(&Frame {
        event: name,
        channel: Some(channel),
        data: Some(data),
        user_id,
    })
    .expect("frames serialise")
}

pub fn subscription_count(channel: &str, count: u64) -> String {
    let data = format!(r#"{{"subscription_count":{count}}}"#);
    frame(
        "pusher_internal:subscription_count",
        Some(channel),
        Some(data),
    )
}

/// `pusher_internal:watchlist_events` in pusher-js's format: `{events:[{name,user_ids}]}`.
pub fn watchlist_events(events: &[(&str, Vec<&str>)]) -> String {
    #[derive(Serialize)]
    struct E<'a> {
        name: &'a str,
        user_ids: &'a [&'a str],
    }
    #[derive(Serialize)]
    struct D<'a> {
        events: Vec<E<'a>>,
    }
    let events = events
        .iter()
        .map(|(name, ids)| E {
            name,
            user_ids: ids,
        })
        .collect();
    frame("pusher_internal:watchlist_events", None, Some(D { events }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_established_data_is_a_string() {
        let f: serde_json::Value =
            serde_json::from_str(&connection_established("1.2", 120)).unwrap();
        let data: serde_json::Value = serde_json::from_str(f["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["socket_id"], "1.2");
        assert_eq!(data["activity_timeout"], 120);
    }

    #[test]
    fn event_escapes_and_keeps_data() {
        let raw = RawValue::from_string(r#"{"a":"\"q\""}"#.into()).unwrap();
        let f: serde_json::Value = serde_json::from_str(&event(
            "client-x",
            "private-a",
            EventData::Raw(&raw),
            Some("u"),
        ))
        .unwrap();
        assert_eq!(f["data"]["a"], "\"q\"");
        assert_eq!(f["user_id"], "u");
        let f: serde_json::Value =
            serde_json::from_str(&event("e", "c", EventData::Str("{\"x\":1}"), None)).unwrap();
        assert_eq!(f["data"], "{\"x\":1}");
        assert!(f.get("user_id").is_none());
    }
}
