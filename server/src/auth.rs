//! HMAC-SHA256 signatures: channel and user auth tokens, API request signatures, webhooks.
//!
//! Signatures are always checked over the exact strings the client sent (never re-serialised
//! JSON), and compared in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why an auth token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("auth token is missing")]
    Missing,
    #[error("auth token must be `<app key>:<signature>`")]
    Malformed,
    #[error("auth token was signed for another app key")]
    WrongKey,
    #[error("invalid signature")]
    BadSignature,
}

fn mac(secret: &str, message: &str) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    m.update(message.as_bytes());
    m
}

/// Lowercase hex HMAC-SHA256 of `message`.
pub fn sign(secret: &str, message: &str) -> String {
    hex::encode(mac(secret, message).finalize().into_bytes())
}

/// Checks a hex signature in constant time (hex case is accepted either way).
pub fn verify(secret: &str, message: &str, signature_hex: &str) -> bool {
    let Ok(bytes) = hex::decode(signature_hex) else {
        return false;
    };
    mac(secret, message).verify_slice(&bytes).is_ok()
}

/// The string signed for a private or presence subscription.
pub fn channel_string(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    match channel_data {
        Some(data) if !data.is_empty() => format!("{socket_id}:{channel}:{data}"),
        _ => format!("{socket_id}:{channel}"),
    }
}

/// The string signed for `pusher:signin`.
pub fn user_string(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

/// Verifies a `key:signature` token as sent in `pusher:subscribe` / `pusher:signin`.
pub fn verify_token(
    app_key: &str,
    secret: &str,
    token: Option<&str>,
    message: &str,
) -> Result<(), AuthError> {
    let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
    let (key, signature) = token.split_once(':').ok_or(AuthError::Malformed)?;
    if key != app_key {
        return Err(AuthError::WrongKey);
    }
    if verify(secret, message, signature) {
        Ok(())
    } else {
        Err(AuthError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Pusher documentation's published vectors.
    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    #[test]
    fn private_channel_vector() {
        let s = channel_string("1234.1234", "private-foobar", None);
        let sig = "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4";
        assert_eq!(sign(SECRET, &s), sig);
        assert_eq!(
            verify_token(KEY, SECRET, Some(&format!("{KEY}:{sig}")), &s),
            Ok(())
        );
    }

    #[test]
    fn presence_channel_vector() {
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Pusher"}}"#;
        let s = channel_string("1234.1234", "presence-foobar", Some(data));
        assert_eq!(
            sign(SECRET, &s),
            "afaed3695da2ffd16931f457e338e6c9f2921fa133ce7dac49f529792be6304c"
        );
    }

    #[test]
    fn user_authentication_vector() {
        let s = user_string("1234.1234", r#"{"id":"12345"}"#);
        assert_eq!(
            sign(SECRET, &s),
            "4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"
        );
    }

    #[test]
    fn http_api_vector() {
        let s = "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f";
        assert_eq!(
            sign(SECRET, s),
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }

    #[test]
    fn bad_tokens_are_refused() {
        let s = channel_string("1.1", "private-a", None);
        let good = sign(SECRET, &s);
        assert_eq!(verify_token(KEY, SECRET, None, &s), Err(AuthError::Missing));
        assert_eq!(
            verify_token(KEY, SECRET, Some("nocolon"), &s),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            verify_token(KEY, SECRET, Some(&format!("other:{good}")), &s),
            Err(AuthError::WrongKey)
        );
        assert_eq!(
            verify_token(KEY, SECRET, Some(&format!("{KEY}:{}", &good[..60])), &s),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify_token(KEY, SECRET, Some(&format!("{KEY}:zz")), &s),
            Err(AuthError::BadSignature)
        );
    }
}
