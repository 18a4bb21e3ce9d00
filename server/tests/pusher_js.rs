//! Runs the real-client suite in `tests/js` (pusher-js 8.6.0 + the pusher HTTP SDK) against the
//! built `sockudo` binary. Fails, never skips, when node or the npm packages are missing.

use std::path::PathBuf;
use std::process::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("server/ has a parent")
        .to_path_buf()
}

#[test]
fn pusher_js_and_http_sdk_suite() {
    let root = repo_root();
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "node is not installed: run tests/setup/install-deps.sh (or `apt-get install nodejs npm`)"
    );
    assert!(
        root.join("tests/js/node_modules/pusher-js").is_dir(),
        "tests/js/node_modules is missing: run tests/setup/install-deps.sh (or `cd tests/js && npm ci`)"
    );
    // --test-force-exit: pusher-js keeps a timer alive after a server-side 4009 close.
    let out = Command::new("node")
        .args([
            "--test",
            "--test-force-exit",
            "--test-concurrency=1",
            "tests/js/",
        ])
        .current_dir(&root)
        .env("SOCKUDO_BIN", env!("CARGO_BIN_EXE_sockudo"))
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node --test tests/js/ failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("# fail 0"), "{stdout}");
}
