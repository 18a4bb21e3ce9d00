//! A delta-decoding client model, as a browser client implements it: feed it every text frame a
//! socket receives; it returns each application event as the plain frame a non-delta client would
//! have received, and records how it arrived. Reusable by cross-node tests (include it with
//! `#[path = "common/delta_client.rs"] mod delta_client;`).
#![allow(dead_code)]

use std::collections::HashMap;

use base64::Engine as _;
use serde_json::Value;
use sockudo_server::delta::Algorithm;

/// How one event arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Full frame carrying `__delta_seq`.
    Full,
    /// `pusher:delta` applied to the held base.
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
    #[error("bad frame: {0}")]
    Bad(String),
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

impl DeltaDecoder {
    /// Decodes one frame; Ok(None) for protocol frames (`pusher:*`, `pusher_internal:*`).
    pub fn feed(&mut self, text: &str) -> Result<Option<Decoded>, DecodeError> {
        let v: Value = serde_json::from_str(text).map_err(|e| DecodeError::Bad(e.to_string()))?;
        let event = v["event"].as_str().unwrap_or_default().to_string();
        let channel = v["channel"].as_str().unwrap_or_default().to_string();
        if event == "pusher:delta" {
            let d = &v["data"];
            let key = d["conflation_key"].as_str().map(String::from);
            let seq = d["seq"].as_u64().ok_or(DecodeError::Bad("seq".into()))?;
            let base_index = d["base_index"]
                .as_u64()
                .ok_or(DecodeError::Bad("base_index".into()))?;
            let alg = Algorithm::parse(d["algorithm"].as_str().unwrap_or("fossil"))
                .map_err(|e| DecodeError::Bad(e.to_string()))?;
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
            let plain = alg
                .apply(base.as_bytes(), &delta)
                .map_err(|e| DecodeError::Bad(e.to_string()))?;
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
        if event.starts_with("pusher:") || event.starts_with("pusher_internal:") {
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
