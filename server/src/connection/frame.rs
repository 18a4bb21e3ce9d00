//! A text message ready for the wire, framed once and shared by every recipient.

use bytes::{BufMut, Bytes, BytesMut};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A server-to-client WebSocket text frame: the header and payload as written to every socket
/// (servers do not mask), plus the payload as text (a view of the same buffer) for whoever
/// needs to read it. Clones are cheap (shared buffers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    wire: Bytes,
    text: Utf8Bytes,
}

/// FIN bit set, opcode 1 (text): every message is one frame.
const FIN_TEXT: u8 = 0x81;

impl Frame {
    pub fn text(payload: String) -> Frame {
        let mut wire = BytesMut::with_capacity(payload.len() + 10);
        put_header(&mut wire, FIN_TEXT, payload.len());
        let header = wire.len();
        wire.put_slice(payload.as_bytes());
        let wire = wire.freeze();
        // The text is a view of the wire bytes, not a second copy of the payload.
        let text = Utf8Bytes::try_from(wire.slice(header..)).expect("copied from a String");
        Frame { wire, text }
    }

    /// The payload.
    pub fn as_str(&self) -> &str {
        self.text.as_str()
    }

    /// The payload's length in bytes.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Header and payload, as written to the socket.
    pub fn wire(&self) -> &Bytes {
        &self.wire
    }
}

impl From<String> for Frame {
    fn from(payload: String) -> Frame {
        Frame::text(payload)
    }
}

impl From<&str> for Frame {
    fn from(payload: &str) -> Frame {
        Frame::text(payload.to_owned())
    }
}

/// RFC 6455 §5.2: the length takes 7 bits, or 126 and 16 bits, or 127 and 64 bits.
fn put_header(out: &mut BytesMut, first: u8, len: usize) {
    out.put_u8(first);
    if len < 126 {
        out.put_u8(len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.put_u8(126);
        out.put_u16(short);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

    /// tungstenite's own parser reads our headers back, at every length boundary.
    #[test]
    fn headers_parse_as_unmasked_final_text_frames() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 200_000] {
            let frame = Frame::text("x".repeat(len));
            let mut cursor = std::io::Cursor::new(frame.wire().as_ref());
            let (header, payload_len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
            assert!(header.is_final, "{len}");
            assert_eq!(header.mask, None, "{len}");
            assert_eq!(payload_len, len as u64);
            let start = cursor.position() as usize;
            assert_eq!(&frame.wire()[start..], frame.as_str().as_bytes());
            assert_eq!(
                frame.as_str().as_ptr(),
                frame.wire()[start..].as_ptr(),
                "one buffer, not two copies"
            );
            assert_eq!(frame.len(), len);
        }
    }
}
