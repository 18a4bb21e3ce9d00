//! Any bytes a client can send as a text frame: the parser answers Ok or a FrameError, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sockudo_server::protocol::client::parse(text);
    }
});
