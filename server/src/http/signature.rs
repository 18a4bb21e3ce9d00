//! Verifying signed HTTP API requests, following what the official SDKs send.
//!
//! String to sign: `METHOD\npath\nquery`, where `query` is every parameter but `auth_signature`,
//! keys lowercased, sorted, `k=v` joined by `&`, values URL-decoded. `body_md5` is required and
//! checked when there is a body; on a bodiless request it is accepted only if it is the MD5 of
//! the empty body (the Python SDK sends that on GET). A timestamp outside the window is a
//! replay; identical requests inside it are legitimate.

use std::borrow::Cow;

use md5::{Digest, Md5};

use crate::apps::App;
use crate::auth;
use crate::http::error::ApiError;

/// MD5 of the empty body.
const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

/// The request parts the signature covers.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The query's parameters as sent (see [`QueryParams`]).
    pub params: &'a [(String, String)],
    pub body: &'a [u8],
}

/// A query string's parameters, URL-decoded, names as sent, in order. Parsed once per
/// request: the signature check and the endpoint both read them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    /// Parses `query` as `application/x-www-form-urlencoded`, exactly as `form_urlencoded`
    /// does. Pieces without `%` or `+` (every parameter the SDKs send) are copied as they are
    /// instead of going through the decoder: this runs on every publish.
    pub fn parse(query: Option<&str>) -> Self {
        let pairs = query
            .unwrap_or("")
            .split('&')
            .filter(|piece| !piece.is_empty())
            .map(|piece| {
                if piece.bytes().any(|b| b == b'%' || b == b'+') {
                    form_urlencoded::parse(piece.as_bytes())
                        .into_owned()
                        .next()
                        .unwrap_or_default()
                } else {
                    let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
                    (name.to_owned(), value.to_owned())
                }
            })
            .collect();
        QueryParams(pairs)
    }

    /// The value of `name` (exact match; the last one when it is repeated).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn as_slice(&self) -> &[(String, String)] {
        &self.0
    }
}

/// Checks a request against `app`; `now` is Unix seconds.
pub fn verify(
    app: &App,
    req: &SignedRequest<'_>,
    now: u64,
    window_secs: u64,
) -> Result<(), ApiError> {
    // Parameter names are case-insensitive, as the SDKs lowercase them when signing.
    let get = |name: &str| {
        req.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let key = get("auth_key").ok_or_else(|| ApiError::bad_request("missing auth_key"))?;
    let timestamp =
        get("auth_timestamp").ok_or_else(|| ApiError::bad_request("missing auth_timestamp"))?;
    let version =
        get("auth_version").ok_or_else(|| ApiError::bad_request("missing auth_version"))?;
    let signature =
        get("auth_signature").ok_or_else(|| ApiError::bad_request("missing auth_signature"))?;
    if version != "1.0" {
        return Err(ApiError::bad_request(format!(
            "unsupported auth_version {version:?}"
        )));
    }
    if key != app.key {
        return Err(ApiError::auth("auth_key does not match the app"));
    }
    let ts: u64 = timestamp
        .parse()
        .map_err(|_| ApiError::bad_request("auth_timestamp must be Unix seconds"))?;
    if ts.abs_diff(now) > window_secs {
        return Err(ApiError::auth(format!(
            "auth_timestamp is {}s away from server time; the window is {window_secs}s",
            ts.abs_diff(now)
        )));
    }
    let body_md5 = get("body_md5");
    if req.body.is_empty() {
        if body_md5.is_some_and(|m| !m.eq_ignore_ascii_case(EMPTY_MD5)) {
            return Err(ApiError::auth(
                "body_md5 given for a request without a body",
            ));
        }
    } else {
        let Some(given) = body_md5 else {
            return Err(ApiError::auth("body_md5 is required with a body"));
        };
        // Compared as bytes: hex of either case, without encoding the digest.
        let mut given_bytes = [0u8; 16];
        if hex::decode_to_slice(given, &mut given_bytes).is_err()
            || given_bytes[..] != Md5::digest(req.body)[..]
        {
            return Err(ApiError::auth("body_md5 does not match the body"));
        }
    }
    let mut signed: Vec<(Cow<'_, str>, &str)> = req
        .params
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("auth_signature"))
        .map(|(k, v)| (lowercase(k), v.as_str()))
        .collect();
    signed.sort_unstable();
    let mut to_sign = String::with_capacity(
        req.method.len()
            + req.path.len()
            + signed
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>()
            + 2,
    );
    to_sign.push_str(req.method);
    to_sign.push('\n');
    to_sign.push_str(req.path);
    to_sign.push('\n');
    for (i, (k, v)) in signed.iter().enumerate() {
        if i > 0 {
            to_sign.push('&');
        }
        to_sign.push_str(k);
        to_sign.push('=');
        to_sign.push_str(v);
    }
    if auth::verify(&app.secret, &to_sign, signature) {
        Ok(())
    } else {
        Err(ApiError::auth("invalid signature"))
    }
}

/// `key` lowercased, allocating only when it has capitals (the SDKs send lowercase names).
fn lowercase(key: &str) -> Cow<'_, str> {
    if key.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(key.to_ascii_lowercase())
    } else {
        Cow::Borrowed(key)
    }
}

/// Signs a request the way the SDKs do (tests, benchmarks).
pub fn sign_query(
    app: &App,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: &[u8],
    ts: u64,
) -> String {
    let mut all: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.push(("auth_key".into(), app.key.clone()));
    all.push(("auth_timestamp".into(), ts.to_string()));
    all.push(("auth_version".into(), "1.0".into()));
    if !body.is_empty() {
        all.push(("body_md5".into(), hex::encode(Md5::digest(body))));
    }
    all.sort();
    let query = all
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let sig = auth::sign(&app.secret, &format!("{method}\n{path}\n{query}"));
    format!("{query}&auth_signature={sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs_app() -> App {
        let mut app = App::generated();
        app.id = "3".into();
        app.key = "278d425bdf160c739803".into();
        app.secret = "7ad3773142a6692b25b8".into();
        app
    }

    const BODY: &str = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
    const QUERY: &str = "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c";

    fn check(query: &str, body: &str, now: u64) -> Result<(), ApiError> {
        let params = QueryParams::parse(Some(query));
        let req = SignedRequest {
            method: "POST",
            path: "/apps/3/events",
            params: params.as_slice(),
            body: body.as_bytes(),
        };
        verify(&docs_app(), &req, now, 600)
    }

    fn check_get(app: &App, query: &str) -> Result<(), ApiError> {
        let params = QueryParams::parse(Some(query));
        let req = SignedRequest {
            method: "GET",
            path: "/apps/3/channels",
            params: params.as_slice(),
            body: b"",
        };
        verify(app, &req, 100, 600)
    }

    #[test]
    fn docs_vector_verifies() {
        assert_eq!(check(QUERY, BODY, 1353088179), Ok(()));
    }

    #[test]
    fn replay_outside_window_is_refused() {
        let e = check(QUERY, BODY, 1353088179 + 601).unwrap_err();
        assert_eq!(e.status, 401);
        assert!(check(QUERY, BODY, 1353088179 + 600).is_ok());
    }

    #[test]
    fn wrong_body_md5_is_refused() {
        let e = check(QUERY, "{}", 1353088179).unwrap_err();
        assert_eq!(e.status, 401);
        assert!(e.message.contains("body_md5"));
    }

    #[test]
    fn body_md5_in_capitals_is_accepted_and_bad_hex_refused() {
        let app = docs_app();
        let signed_with = |md5: &str| {
            let query = format!(
                "auth_key={}&auth_timestamp=1353088179&auth_version=1.0&body_md5={md5}",
                app.key
            );
            let sig = auth::sign(&app.secret, &format!("POST\n/apps/3/events\n{query}"));
            format!("{query}&auth_signature={sig}")
        };
        let upper = hex::encode(Md5::digest(BODY)).to_ascii_uppercase();
        assert_eq!(check(&signed_with(&upper), BODY, 1353088179), Ok(()));
        for bad in ["zz365a775a4cd0599faeb73354201b6f", "ec365a", ""] {
            let e = check(&signed_with(bad), BODY, 1353088179).unwrap_err();
            assert_eq!(e.message, "body_md5 does not match the body", "{bad:?}");
        }
    }

    #[test]
    fn empty_body_md5_on_get_is_accepted() {
        let app = docs_app();
        let q = sign_query(
            &app,
            "GET",
            "/apps/3/channels",
            &[("body_md5", EMPTY_MD5)],
            b"",
            100,
        );
        assert_eq!(check_get(&app, &q), Ok(()));
        let q = sign_query(
            &app,
            "GET",
            "/apps/3/channels",
            &[("body_md5", "abc")],
            b"",
            100,
        );
        assert_eq!(check_get(&app, &q).unwrap_err().status, 401);
    }

    #[test]
    fn tampered_params_are_refused() {
        let q = QUERY.replace("auth_signature=da", "auth_signature=db");
        assert_eq!(check(&q, BODY, 1353088179).unwrap_err().status, 401);
        let q = format!("{QUERY}&info=user_count");
        assert_eq!(check(&q, BODY, 1353088179).unwrap_err().status, 401);
        let e = check("auth_key=x", BODY, 1353088179).unwrap_err();
        assert_eq!(e.status, 400);
    }

    #[test]
    fn parameter_names_are_case_insensitive() {
        let q = QUERY
            .replace("auth_key=", "AUTH_KEY=")
            .replace("body_md5=", "Body_MD5=");
        assert_eq!(check(&q, BODY, 1353088179), Ok(()));
    }

    #[test]
    fn query_params_parse_as_form_urlencoded_does() {
        for query in [
            "",
            "a=1&b=2",
            "&&a=1&&",
            "a&b=&=c",
            "a=1=2",
            "info=user_count%2Csubscription_count&filter_by_prefix=presence-",
            "name+with+plus=x+y&pct=%41%zz%",
            "dup=1&dup=2",
            "caf%C3%A9=%FF",
        ] {
            let expected: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            assert_eq!(
                QueryParams::parse(Some(query)).as_slice(),
                expected,
                "{query:?}"
            );
        }
        let params = QueryParams::parse(Some("dup=1&info=a&dup=2"));
        assert_eq!(params.get("dup"), Some("2"));
        assert_eq!(params.get("info"), Some("a"));
        assert_eq!(params.get("INFO"), None);
        assert_eq!(QueryParams::parse(None), QueryParams::default());
    }
}
