//! A delta-decoding client model, as a browser client implements it: feed it every text frame a
//! socket receives; it returns each application event as the plain frame a non-delta client would
//! have received, and records how it arrived.
//!
//! It decodes with the codec crates directly (not through the server's code), so a test that
//! decodes what a server sent checks the wire format, not the server against itself. Used by the
//! server's delta tests, the fleet conformance suite and the benchmark harness.

use std::collections::HashMap;

use base64::Engine as _;
use oxidelta::compress::decoder as vc_decoder;
use serde_json::Value;

/// How one event arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Full frame carrying `__delta_seq`.
    Full,
    /// A delta frame applied to the held base.
    Delta { base_index: u64 },
    /// A frame outside any delta stream (small, encrypted, delta off, coordination down).
    Plain,
}

#[derive(Debug, Clone)]
pub struct Decoded {
    /// The plain frame, byte for byte what a non-delta client receives.
    pub plain: String,
    pub channel: String,
    pub event: String,
    pub seq: Option<u64>,
    pub conflation_key: Option<String>,
    pub kind: Kind,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("delta for {channel}/{key:?} but no base held")]
    NoBase {
        channel: String,
        key: Option<String>,
    },
    #[error("delta base_index {want} but the held base is {have}")]
    WrongBase { want: u64, have: u64 },
    #[error("unknown delta algorithm {0:?}")]
    Algorithm(String),
    #[error("delta does not apply: {0}")]
    Apply(String),
    #[error("bad frame: {0}")]
    Bad(String),
}

/// The encodings a server may send: Fossil, and VCDIFF (xdelta3) without the Adler-32 extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Fossil,
    Xdelta3,
}

impl Algorithm {
    /// The names on the wire: `fossil`, `xdelta3` or its alias `vcdiff`.
    pub fn parse(name: &str) -> Result<Algorithm, DecodeError> {
        match name.to_ascii_lowercase().as_str() {
            "fossil" => Ok(Algorithm::Fossil),
            "xdelta3" | "vcdiff" => Ok(Algorithm::Xdelta3),
            _ => Err(DecodeError::Algorithm(name.chars().take(32).collect())),
        }
    }

    /// Rebuilds the new text from the old one and a delta.
    pub fn apply(self, old: &[u8], delta: &[u8]) -> Result<Vec<u8>, DecodeError> {
        match self {
            Algorithm::Fossil => {
                fossil_delta::apply(old, delta).map_err(|e| DecodeError::Apply(format!("{e:?}")))
            }
            Algorithm::Xdelta3 => {
                vc_decoder::decode_all(old, delta).map_err(|e| DecodeError::Apply(e.to_string()))
            }
        }
    }
}

/// What the client holds per stream: (seq, plain frame).
#[derive(Default)]
pub struct DeltaDecoder {
    bases: HashMap<(String, Option<String>), (u64, String)>,
}

const SEQ: &str = ",\"__delta_seq\":";

/// Splits a full frame into its plain frame, sequence and conflation key. The metadata is the
/// last members of the object; inside a JSON string a `"` is always escaped, so the last bare
/// `,"__delta_seq":` is the metadata's.
pub fn strip_metadata(text: &str) -> Option<(String, u64, Option<String>)> {
    let at = text.rfind(SEQ)?;
    let tail = &text[at + 1..text.len() - 1]; // `"__delta_seq":N[,"__conflation_key":"K"]`
    let meta: Value = serde_json::from_str(&format!("{{{tail}}}")).ok()?;
    let seq = meta["__delta_seq"].as_u64()?;
    let key = meta["__conflation_key"].as_str().map(String::from);
    Some((format!("{}}}", &text[..at]), seq, key))
}

/// A delta frame: `pusher:delta`, or `sockudo:delta` on the reference server's protocol 2.
fn is_delta_event(event: &str) -> bool {
    matches!(event, "pusher:delta" | "sockudo:delta")
}

/// Protocol frames of either protocol (`pusher:*`, `pusher_internal:*`, `sockudo:*`, ...).
fn is_protocol_event(event: &str) -> bool {
    [
        "pusher:",
        "pusher_internal:",
        "sockudo:",
        "sockudo_internal:",
    ]
    .iter()
    .any(|p| event.starts_with(p))
}

impl DeltaDecoder {
    /// Decodes one frame; Ok(None) for protocol frames (`pusher:*`, `pusher_internal:*`).
    pub fn feed(&mut self, text: &str) -> Result<Option<Decoded>, DecodeError> {
        let v: Value = serde_json::from_str(text).map_err(|e| DecodeError::Bad(e.to_string()))?;
        let event = v["event"].as_str().unwrap_or_default().to_string();
        let channel = v["channel"].as_str().unwrap_or_default().to_string();
        if is_delta_event(&event) {
            let d = &v["data"];
            let key = d["conflation_key"].as_str().map(String::from);
            let seq = d["seq"].as_u64().ok_or(DecodeError::Bad("seq".into()))?;
            let base_index = d["base_index"]
                .as_u64()
                .ok_or(DecodeError::Bad("base_index".into()))?;
            let alg = Algorithm::parse(d["algorithm"].as_str().unwrap_or("fossil"))?;
            let delta = base64::engine::general_purpose::STANDARD
                .decode(d["delta"].as_str().unwrap_or_default())
                .map_err(|e| DecodeError::Bad(e.to_string()))?;
            let stream = (channel.clone(), key.clone());
            let Some((have, base)) = self.bases.get(&stream) else {
                return Err(DecodeError::NoBase { channel, key });
            };
            if *have != base_index {
                return Err(DecodeError::WrongBase {
                    want: base_index,
                    have: *have,
                });
            }
            let plain = alg.apply(base.as_bytes(), &delta)?;
            let plain = String::from_utf8(plain).map_err(|e| DecodeError::Bad(e.to_string()))?;
            self.bases.insert(stream, (seq, plain.clone()));
            let inner = d["event"].as_str().unwrap_or_default().to_string();
            return Ok(Some(Decoded {
                plain,
                channel,
                event: inner,
                seq: Some(seq),
                conflation_key: key,
                kind: Kind::Delta { base_index },
            }));
        }
        if is_protocol_event(&event) {
            return Ok(None);
        }
        if let Some((plain, seq, key)) = strip_metadata(text) {
            self.bases
                .insert((channel.clone(), key.clone()), (seq, plain.clone()));
            return Ok(Some(Decoded {
                plain,
                channel,
                event,
                seq: Some(seq),
                conflation_key: key,
                kind: Kind::Full,
            }));
        }
        Ok(Some(Decoded {
            plain: text.to_string(),
            channel,
            event,
            seq: None,
            conflation_key: None,
            kind: Kind::Plain,
        }))
    }

    /// Forgets a channel's bases (what a client does when it sends `pusher:delta_sync_error`
    /// or resubscribes).
    pub fn forget(&mut self, channel: &str) {
        self.bases.retain(|(c, _), _| c != channel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{"event":"tick","channel":"c","data":"{\"price\":\"100.00\",\"name\":\"a long enough static name\"}"}"#;
    const NEXT: &str = r#"{"event":"tick","channel":"c","data":"{\"price\":\"101.50\",\"name\":\"a long enough static name\"}"}"#;

    fn full(plain: &str, seq: u64) -> String {
        format!("{},\"__delta_seq\":{seq}}}", &plain[..plain.len() - 1])
    }

    fn delta_frame(event: &str, alg: &str, delta: &[u8], seq: u64, base: u64) -> String {
        serde_json::json!({
            "event": event,
            "channel": "c",
            "data": {
                "event": "tick",
                "delta": base64::engine::general_purpose::STANDARD.encode(delta),
                "seq": seq,
                "algorithm": alg,
                "base_index": base,
            }
        })
        .to_string()
    }

    #[test]
    fn full_then_fossil_delta_decodes_to_the_plain_frame() {
        let mut d = DeltaDecoder::default();
        let f = d.feed(&full(BASE, 1)).unwrap().unwrap();
        assert_eq!(
            (f.plain.as_str(), f.seq, f.kind),
            (BASE, Some(1), Kind::Full)
        );
        // fossil-delta names its arguments (target, source).
        let delta = fossil_delta::delta(NEXT.as_bytes(), BASE.as_bytes());
        let x = d
            .feed(&delta_frame("pusher:delta", "fossil", &delta, 2, 1))
            .unwrap()
            .unwrap();
        assert_eq!(x.plain, NEXT);
        assert_eq!(x.kind, Kind::Delta { base_index: 1 });
        assert_eq!(x.event, "tick");
    }

    #[test]
    fn protocol_2_delta_frames_decode_too() {
        let mut d = DeltaDecoder::default();
        d.feed(&full(BASE, 7)).unwrap();
        let delta = fossil_delta::delta(NEXT.as_bytes(), BASE.as_bytes());
        let x = d
            .feed(&delta_frame("sockudo:delta", "fossil", &delta, 8, 7))
            .unwrap()
            .unwrap();
        assert_eq!(x.plain, NEXT);
        assert!(d.feed(r#"{"event":"sockudo:pong"}"#).unwrap().is_none());
    }

    #[test]
    fn a_delta_against_another_base_is_refused() {
        let mut d = DeltaDecoder::default();
        let delta = fossil_delta::delta(NEXT.as_bytes(), BASE.as_bytes());
        let frame = delta_frame("pusher:delta", "fossil", &delta, 2, 1);
        assert!(matches!(d.feed(&frame), Err(DecodeError::NoBase { .. })));
        d.feed(&full(BASE, 5)).unwrap();
        assert!(matches!(
            d.feed(&frame),
            Err(DecodeError::WrongBase { want: 1, have: 5 })
        ));
        assert!(matches!(
            Algorithm::parse("zstd"),
            Err(DecodeError::Algorithm(_))
        ));
    }

    #[test]
    fn plain_and_small_frames_pass_through() {
        let mut d = DeltaDecoder::default();
        let x = d.feed(BASE).unwrap().unwrap();
        assert_eq!((x.plain.as_str(), x.seq, x.kind), (BASE, None, Kind::Plain));
        assert!(matches!(d.feed("not json"), Err(DecodeError::Bad(_))));
    }
}
