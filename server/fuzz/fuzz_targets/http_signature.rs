//! Arbitrary method, path, query and body against the signed-request check: it must reject or
//! accept without panicking, whatever the query's encoding or the body's size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockudo_config::AppConfig;
use sockudo_server::apps::App;
use sockudo_server::http::signature::{QueryParams, SignedRequest, verify};

fuzz_target!(|data: &[u8]| {
    // Split the input into query / path / body at the first two NUL bytes.
    let mut parts = data.splitn(3, |b| *b == 0);
    let query = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let (Ok(query), Ok(path)) = (std::str::from_utf8(query), std::str::from_utf8(path)) else {
        return;
    };
    let app = App::resolve(
        0,
        &AppConfig::new("1", "278d425bdf160c739803", "7ad3773142a6692b25b8"),
    )
    .expect("inline app");
    let params = QueryParams::parse(Some(query));
    // The fast path of the parser must agree with the decoder it stands in for.
    let decoded: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(params.as_slice(), decoded);
    let req = SignedRequest {
        method: "POST",
        path,
        params: params.as_slice(),
        body,
    };
    let _ = verify(&app, &req, 1_353_088_179, 600);
});
