//! The official Python `pusher` SDK (tests/py) against the server: signed GETs with the
//! empty-body md5, triggers, batch, send_to_user, and a presence auth whose channel_data has
//! spaces and a numeric user_id. Fails, never skips, when the venv is missing.

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_calls_and_verbatim_presence_auth() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run tests/setup/install-deps.sh (it creates .venv from tests/py/requirements.txt)",
        python.display()
    );
    let server = start(config()).await;
    let mut a = connect(&server).await;
    a.subscribe("py-chan").await;
    let mut u = connect(&server).await;
    u.signin(r#"{"id":"py-user"}"#).await;

    let out = tokio::process::Command::new(&python)
        .arg(root.join("tests/py/sdk_check.py"))
        .arg(server.addr.ip().to_string())
        .arg(server.addr.port().to_string())
        .arg(&a.socket_id)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["channel"]["occupied"], true, "{result}");
    assert_eq!(result["channel"]["subscription_count"], 1);
    assert!(result["channels"]["channels"].is_object());

    let ev = a.next().await;
    assert_eq!(ev["event"], "py-event");
    assert_eq!(a.next().await["event"], "py-batch");
    assert_eq!(u.next().await["event"], "py-direct");

    let auth = result["auth"]["auth"].as_str().unwrap();
    let channel_data = result["auth"]["channel_data"].as_str().unwrap();
    assert!(
        channel_data.contains(": "),
        "the SDK's json.dumps adds spaces: {channel_data}"
    );
    a.send(serde_json::json!({"event":"pusher:subscribe","data":{"channel":"presence-py","auth":auth,"channel_data":channel_data}}))
        .await;
    let ok = a.next().await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    let data: Value = serde_json::from_str(ok["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["presence"]["ids"][0], "10");
}
