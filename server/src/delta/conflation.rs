//! Conflation: a dotted JSON path (`delta_compression.conflation_key`, e.g. `asset` or
//! `meta.symbol`) splits one channel into independent delta streams, so interleaved tickers on one
//! channel each delta against their own previous message.

use serde_json::Value;

/// Longest conflation value kept; longer values (or non-scalars) put the message in the
/// channel's default stream, so a hostile publisher cannot grow per-socket state with huge keys.
pub const MAX_KEY_LEN: usize = 128;

/// The conflation value of an event's `data` text, or None (the channel's default stream).
/// Strings are taken as they are, numbers and booleans as their JSON text.
pub fn extract(path: &str, data: &str) -> Option<String> {
    if path.is_empty() {
        return None;
    }
    let root: Value = serde_json::from_str(data).ok()?;
    let mut v = &root;
    for part in path.split('.') {
        v = v.as_object()?.get(part)?;
    }
    let key = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (key.len() <= MAX_KEY_LEN).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            extract("asset", r#"{"asset":"BTC","p":1}"#).as_deref(),
            Some("BTC")
        );
        assert_eq!(extract("m.id", r#"{"m":{"id":7}}"#).as_deref(), Some("7"));
        assert_eq!(extract("asset", r#"{"p":1}"#), None);
        assert_eq!(extract("asset", "not json"), None);
        assert_eq!(extract("asset", r#"{"asset":{"x":1}}"#), None);
        assert_eq!(extract("", r#"{"asset":"x"}"#), None);
        let long = format!(r#"{{"asset":"{}"}}"#, "x".repeat(MAX_KEY_LEN + 1));
        assert_eq!(extract("asset", &long), None);
    }
}
