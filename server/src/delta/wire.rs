//! The delta frames, with the reference server's names and fields (so its JS client decodes ours).
//! `docs/delta-compression.md` is the specification; the bytes are pinned by tests.
//!
//! * Full message: the plain event frame that every other client receives, with
//!   `,"__delta_seq":N` (and `,"__conflation_key":"K"` on a conflated channel) inserted before
//!   its closing `}`.
//! * Base of the next delta: that full frame with the two metadata members removed, i.e. exactly
//!   the plain frame. A delta frame rebuilds the next plain frame from the previous one.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde_json::Value;

use crate::delta::algorithm::Algorithm;

pub const ENABLE_EVENT: &str = "pusher:enable_delta_compression";
pub const ENABLED_EVENT: &str = "pusher:delta_compression_enabled";
pub const DELTA_EVENT: &str = "pusher:delta";
pub const SYNC_ERROR_EVENT: &str = "pusher:delta_sync_error";

/// The Fossil delta of the worked example in the docs (pinned by a test in `algorithm`).
pub const DOC_EXAMPLE_FOSSIL_DELTA: &str = "1i\n1H@0,S:35\\\",\\\"ts\\\":1700000000002}\"}2aUp9R;";

/// `pusher:delta_compression_enabled`, for the connection or (with `channel`) one subscription.
pub fn enabled(algorithm: Option<Algorithm>, channel: Option<&str>) -> String {
    #[derive(Serialize)]
    struct D {
        enabled: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        algorithm: Option<&'static str>,
    }
    #[derive(Serialize)]
    struct F<'a> {
        event: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'a str>,
        data: D,
    }
    serde_json::to_string(&F {
        event: ENABLED_EVENT,
        channel,
        data: D {
            enabled: algorithm.is_some(),
            algorithm: algorithm.map(Algorithm::as_str),
        },
    })
    .expect("frame serialises")
}

/// The full frame: `plain` with the sequence (and conflation key) members before its final `}`.
pub fn full(plain: &str, seq: u64, conflation_key: Option<&str>) -> String {
    let body = plain
        .strip_suffix('}')
        .expect("event frames are JSON objects");
    let mut out = String::with_capacity(plain.len() + 40);
    out.push_str(body);
    out.push_str(",\"__delta_seq\":");
    out.push_str(&seq.to_string());
    if let Some(k) = conflation_key {
        out.push_str(",\"__conflation_key\":");
        out.push_str(&serde_json::to_string(k).expect("string serialises"));
    }
    out.push('}');
    out
}

/// The delta frame for `event` on `channel`.
pub fn delta(
    channel: &str,
    event: &str,
    delta: &[u8],
    seq: u64,
    algorithm: Algorithm,
    conflation_key: Option<&str>,
    base_index: u64,
) -> String {
    #[derive(Serialize)]
    struct D<'a> {
        event: &'a str,
        delta: String,
        seq: u64,
        algorithm: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        conflation_key: Option<&'a str>,
        base_index: u64,
    }
    #[derive(Serialize)]
    struct F<'a> {
        event: &'static str,
        channel: &'a str,
        data: D<'a>,
    }
    serde_json::to_string(&F {
        event: DELTA_EVENT,
        channel,
        data: D {
            event,
            delta: STANDARD.encode(delta),
            seq,
            algorithm: algorithm.as_str(),
            conflation_key,
            base_index,
        },
    })
    .expect("frame serialises")
}

/// A subscription's `delta` member: an algorithm name (or `disabled`), a bool, or
/// `{enabled, algorithm}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionDelta {
    /// Not given: the connection's setting applies.
    Inherit,
    Disabled,
    /// Enabled, with this algorithm or (None) the connection's / server's.
    Enabled(Option<Algorithm>),
}

impl SubscriptionDelta {
    pub fn parse(v: Option<&Value>) -> Result<SubscriptionDelta, String> {
        let Some(v) = v else {
            return Ok(SubscriptionDelta::Inherit);
        };
        match v {
            Value::Null => Ok(SubscriptionDelta::Inherit),
            Value::Bool(true) => Ok(SubscriptionDelta::Enabled(None)),
            Value::Bool(false) => Ok(SubscriptionDelta::Disabled),
            Value::String(s) if s.eq_ignore_ascii_case("disabled") => {
                Ok(SubscriptionDelta::Disabled)
            }
            Value::String(s) => Algorithm::parse(s)
                .map(|a| SubscriptionDelta::Enabled(Some(a)))
                .map_err(|e| e.to_string()),
            Value::Object(o) => {
                let enabled = o.get("enabled").and_then(Value::as_bool).unwrap_or(true);
                if !enabled {
                    return Ok(SubscriptionDelta::Disabled);
                }
                match o.get("algorithm").and_then(Value::as_str) {
                    Some(a) => Algorithm::parse(a)
                        .map(|a| SubscriptionDelta::Enabled(Some(a)))
                        .map_err(|e| e.to_string()),
                    None => Ok(SubscriptionDelta::Enabled(None)),
                }
            }
            _ => Err("`delta` must be a string, a bool or {enabled, algorithm}".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn full_frame_inserts_metadata_at_the_end() {
        let plain = r#"{"event":"e","channel":"c","data":"{\"a\":1}"}"#;
        assert_eq!(
            full(plain, 7, None),
            r#"{"event":"e","channel":"c","data":"{\"a\":1}","__delta_seq":7}"#
        );
        assert_eq!(
            full(plain, 8, Some("B\"TC")),
            r#"{"event":"e","channel":"c","data":"{\"a\":1}","__delta_seq":8,"__conflation_key":"B\"TC"}"#
        );
    }

    #[test]
    fn delta_frame_shape() {
        let f: Value = serde_json::from_str(&delta(
            "c",
            "e",
            b"xyz",
            9,
            Algorithm::Fossil,
            Some("BTC"),
            8,
        ))
        .unwrap();
        assert_eq!(
            f,
            json!({"event":"pusher:delta","channel":"c","data":{"event":"e","delta":"eHl6","seq":9,"algorithm":"fossil","conflation_key":"BTC","base_index":8}})
        );
        let f: Value =
            serde_json::from_str(&delta("c", "e", b"", 2, Algorithm::Xdelta3, None, 1)).unwrap();
        assert!(f["data"].get("conflation_key").is_none());
    }

    #[test]
    fn subscription_settings() {
        use SubscriptionDelta::*;
        let p = |v: Value| SubscriptionDelta::parse(Some(&v));
        assert_eq!(SubscriptionDelta::parse(None), Ok(Inherit));
        assert_eq!(p(json!(true)), Ok(Enabled(None)));
        assert_eq!(p(json!(false)), Ok(Disabled));
        assert_eq!(p(json!("disabled")), Ok(Disabled));
        assert_eq!(p(json!("vcdiff")), Ok(Enabled(Some(Algorithm::Xdelta3))));
        assert_eq!(
            p(json!({"enabled":true,"algorithm":"fossil"})),
            Ok(Enabled(Some(Algorithm::Fossil)))
        );
        assert_eq!(p(json!({"enabled":false})), Ok(Disabled));
        assert!(p(json!("brotli")).is_err());
        assert!(p(json!(3)).is_err());
    }

    #[test]
    fn enabled_frame() {
        assert_eq!(
            enabled(Some(Algorithm::Fossil), None),
            r#"{"event":"pusher:delta_compression_enabled","data":{"enabled":true,"algorithm":"fossil"}}"#
        );
        assert_eq!(
            enabled(None, Some("c")),
            r#"{"event":"pusher:delta_compression_enabled","channel":"c","data":{"enabled":false}}"#
        );
    }
}
