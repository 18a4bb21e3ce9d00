//! The delta encodings: Fossil (what the realtime JS clients decode) and VCDIFF (RFC 3284, the
//! format of xdelta3 and of `@ably/vcdiff-decoder`).
//!
//! Direction, for both: `apply(old, encode(old, new)) == new`.

use std::fmt;

use oxidelta::compress::{decoder as vc_decoder, encoder as vc_encoder};
use sockudo_config::DeltaAlgorithm;

/// An encoding a client may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Fossil,
    /// VCDIFF without the Adler-32 extension (the JS decoders do not read it).
    Xdelta3,
}

#[derive(Debug, thiserror::Error)]
pub enum AlgorithmError {
    #[error("unknown delta algorithm {0:?} (use fossil or xdelta3)")]
    Unknown(String),
    #[error("vcdiff encoding failed: {0}")]
    Encode(String),
    #[error("delta does not apply: {0}")]
    Apply(String),
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Fossil => "fossil",
            Algorithm::Xdelta3 => "xdelta3",
        }
    }

    /// The names clients send: `fossil`, `xdelta3` or its alias `vcdiff`.
    pub fn parse(name: &str) -> Result<Algorithm, AlgorithmError> {
        match name.to_ascii_lowercase().as_str() {
            "fossil" => Ok(Algorithm::Fossil),
            "xdelta3" | "vcdiff" => Ok(Algorithm::Xdelta3),
            _ => Err(AlgorithmError::Unknown(name.chars().take(32).collect())),
        }
    }

    /// The delta turning `old` into `new`.
    pub fn encode(self, old: &[u8], new: &[u8]) -> Result<Vec<u8>, AlgorithmError> {
        match self {
            // fossil-delta names its arguments (target, source): the new text comes first.
            Algorithm::Fossil => Ok(fossil_delta::delta(new, old)),
            Algorithm::Xdelta3 => {
                let opts = vc_encoder::CompressOptions {
                    checksum: false,
                    ..Default::default()
                };
                vc_encoder::encode_all(Vec::with_capacity(new.len() / 2), old, new, opts)
                    .map_err(|e| AlgorithmError::Encode(e.to_string()))
            }
        }
    }

    /// Rebuilds `new` from `old` and a delta (what a client does).
    pub fn apply(self, old: &[u8], delta: &[u8]) -> Result<Vec<u8>, AlgorithmError> {
        match self {
            Algorithm::Fossil => {
                fossil_delta::apply(old, delta).map_err(|e| AlgorithmError::Apply(format!("{e:?}")))
            }
            Algorithm::Xdelta3 => {
                vc_decoder::decode_all(old, delta).map_err(|e| AlgorithmError::Apply(e.to_string()))
            }
        }
    }
}

impl From<DeltaAlgorithm> for Algorithm {
    fn from(a: DeltaAlgorithm) -> Self {
        match a {
            DeltaAlgorithm::Fossil => Algorithm::Fossil,
            DeltaAlgorithm::Xdelta3 => Algorithm::Xdelta3,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(seed: &mut u64, len: usize, alphabet: &[u8]) -> Vec<u8> {
        (0..len)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                alphabet[(*seed % alphabet.len() as u64) as usize]
            })
            .collect()
    }

    #[test]
    fn round_trip_both_directions_are_distinct() {
        let old = br#"{"event":"tick","channel":"prices","data":"{\"asset\":\"BTC\",\"price\":100.5,\"volume\":12}"}"#;
        let new = br#"{"event":"tick","channel":"prices","data":"{\"asset\":\"BTC\",\"price\":101.25,\"volume\":13}"}"#;
        for alg in [Algorithm::Fossil, Algorithm::Xdelta3] {
            let d = alg.encode(old, new).unwrap();
            assert_eq!(alg.apply(old, &d).unwrap(), new, "{alg}");
            assert!(d.len() < new.len(), "{alg}: {} >= {}", d.len(), new.len());
        }
    }

    #[test]
    fn fossil_is_the_documented_wire_example() {
        // Pinned bytes: docs/delta-compression.md shows this exact delta.
        let old = br#"{"event":"price","channel":"ticker","data":"{\"asset\":\"BTC\",\"price\":\"64000.10\",\"ts\":1700000000001}"}"#;
        let new = br#"{"event":"price","channel":"ticker","data":"{\"asset\":\"BTC\",\"price\":\"64000.35\",\"ts\":1700000000002}"}"#;
        let d = Algorithm::Fossil.encode(old, new).unwrap();
        assert_eq!(Algorithm::Fossil.apply(old, &d).unwrap(), new);
        assert_eq!(
            String::from_utf8_lossy(&d),
            super::super::wire::DOC_EXAMPLE_FOSSIL_DELTA
        );
    }

    #[test]
    fn random_inputs_round_trip_and_never_panic() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..400 {
            let alphabet: &[u8] = if i % 2 == 0 {
                b"ab"
            } else {
                b"{}\":,0123456789abcdefxyz"
            };
            let len_a = (i * 7) % 700;
            let old = pseudo_random(&mut seed, len_a, alphabet);
            let mut new = old.clone();
            // Mutate a few spans, sometimes grow or shrink.
            let edits = 1 + i % 5;
            for _ in 0..edits {
                if new.is_empty() {
                    new.extend(pseudo_random(&mut seed, 5, alphabet));
                    continue;
                }
                let at = (seed as usize) % new.len();
                let span = pseudo_random(&mut seed, i % 40, alphabet);
                match i % 3 {
                    0 => new.splice(at..at, span),
                    1 => new.splice(at..(at + 3).min(new.len()), span),
                    _ => new.splice(at..new.len(), span),
                };
            }
            for alg in [Algorithm::Fossil, Algorithm::Xdelta3] {
                let d = alg.encode(&old, &new).unwrap();
                assert_eq!(alg.apply(&old, &d).unwrap(), new, "{alg} case {i}");
            }
        }
    }

    #[test]
    fn names() {
        assert_eq!(Algorithm::parse("VCDIFF").unwrap(), Algorithm::Xdelta3);
        assert_eq!(Algorithm::parse("fossil").unwrap(), Algorithm::Fossil);
        assert!(Algorithm::parse("zstd").is_err());
    }
}
