//! A minimal WebSocket client for the subscribers: one reusable read buffer per connection and
//! frames parsed in place, so the load generator spends its core on reading sockets rather than
//! on a general-purpose WebSocket library (it must keep up with the server under test).
//!
//! Scope: what a Pusher server sends. Unmasked server frames; text, close, ping and pong;
//! a fragmented or masked server frame is an error (no Pusher server sends one).

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A frame read from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Text(&'a str),
    /// The close code (1005 when the frame had none).
    Close(u16),
}

/// A frame found in the buffer: offsets relative to its start.
struct Parsed {
    opcode: u8,
    /// Payload range.
    payload: (usize, usize),
    /// Whole frame length.
    len: usize,
}

pub struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Start of unparsed bytes in `buf`; `buf.len()` is their end.
    start: usize,
}

/// Largest frame accepted (the benchmark's messages are a few hundred bytes).
const MAX_FRAME: usize = 1 << 20;
const READ_CHUNK: usize = 4096;

impl RawWs {
    /// The HTTP upgrade on an open TCP stream (`path` with query, `host` for the Host header).
    pub async fn handshake(mut stream: TcpStream, host: &str, path: &str) -> Result<RawWs> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::with_capacity(READ_CHUNK);
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 16 * 1024 {
                bail!("no end of the HTTP response head in 16 KiB");
            }
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed during the WebSocket handshake");
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]);
        let status = head.lines().next().unwrap_or("");
        if !status.starts_with("HTTP/1.1 101") {
            bail!("WebSocket upgrade refused: {status}");
        }
        // Frames may already follow the head (pusher:connection_established).
        let rest = buf.split_off(head_end);
        Ok(RawWs {
            stream,
            buf: rest,
            start: 0,
        })
    }

    /// The next text or close frame; answers pings on the way.
    pub async fn next(&mut self) -> Result<Frame<'_>> {
        // Indices first, the borrow of the buffer last: pings need `self` mutably meanwhile.
        let (opcode, from, to) = loop {
            let Some(Parsed {
                opcode,
                payload,
                len,
            }) = self.parse()?
            else {
                self.fill().await?;
                continue;
            };
            let at = self.start;
            self.start += len;
            match opcode {
                0x1 | 0x8 => break (opcode, at + payload.0, at + payload.1),
                0x9 => {
                    let body = self.buf[at + payload.0..at + payload.1].to_vec();
                    self.send(0xA, &body).await?;
                }
                0xA => {}
                other => bail!("unexpected WebSocket opcode {other:#x}"),
            }
        };
        let p = &self.buf[from..to];
        if opcode == 0x1 {
            return Ok(Frame::Text(
                std::str::from_utf8(p).context("text frame is not UTF-8")?,
            ));
        }
        Ok(Frame::Close(if p.len() >= 2 {
            u16::from_be_bytes([p[0], p[1]])
        } else {
            1005
        }))
    }

    /// The complete frame at `start`, if the buffer holds one.
    fn parse(&self) -> Result<Option<Parsed>> {
        let b = &self.buf[self.start..];
        if b.len() < 2 {
            return Ok(None);
        }
        if b[0] & 0x80 == 0 || b[0] & 0x0F == 0 {
            bail!("fragmented WebSocket frame from the server");
        }
        if b[1] & 0x80 != 0 {
            bail!("masked WebSocket frame from the server");
        }
        let (len, head) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&b[2..10]);
                (usize::try_from(u64::from_be_bytes(n))?, 10)
            }
            126 | 127 => return Ok(None),
            n => (n as usize, 2),
        };
        if len > MAX_FRAME {
            bail!("server frame of {len} bytes (limit {MAX_FRAME})");
        }
        if b.len() < head + len {
            return Ok(None);
        }
        Ok(Some(Parsed {
            opcode: b[0] & 0x0F,
            payload: (head, head + len),
            len: head + len,
        }))
    }

    /// Reads more bytes, first moving the unparsed tail to the front of the buffer.
    async fn fill(&mut self) -> Result<()> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        // Reads into the spare capacity: zero-filling 4 KiB per read costs more than parsing
        // the ~300-byte frame it usually brings.
        self.buf.reserve(READ_CHUNK);
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            bail!("connection closed by the server");
        }
        Ok(())
    }

    pub async fn send_text(&mut self, text: &str) -> Result<()> {
        self.send(0x1, text.as_bytes()).await
    }

    /// A close frame with `code`.
    pub async fn close(&mut self, code: u16) -> Result<()> {
        self.send(0x8, &code.to_be_bytes()).await
    }

    /// One masked frame (clients must mask; a fixed key is fine for a load generator).
    async fn send(&mut self, opcode: u8, payload: &[u8]) -> Result<()> {
        const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x80 | opcode);
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= u16::MAX as usize => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&MASK);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        self.stream.write_all(&frame).await?;
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A scripted server: answers the upgrade, then writes `frames` (already encoded).
    async fn serve(frames: Vec<u8>) -> (RawWs, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while find(&head, b"\r\n\r\n").is_none() {
                s.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            let mut out =
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
            out.extend_from_slice(&frames);
            s.write_all(&out).await.unwrap();
            // What the client sent after the handshake, until it closes.
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got).await;
            got
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        let ws = RawWs::handshake(stream, "x", "/app/k").await.unwrap();
        (ws, server)
    }

    fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    #[tokio::test]
    async fn reads_text_answers_pings_and_reports_the_close_code() {
        let long = "y".repeat(300);
        let mut frames = frame(0x1, b"hello");
        frames.extend(frame(0x9, b"p"));
        frames.extend(frame(0x1, long.as_bytes()));
        frames.extend(frame(0x8, &4200u16.to_be_bytes()));
        let (mut ws, server) = serve(frames).await;
        assert_eq!(ws.next().await.unwrap(), Frame::Text("hello"));
        assert_eq!(ws.next().await.unwrap(), Frame::Text(long.as_str()));
        assert_eq!(ws.next().await.unwrap(), Frame::Close(4200));
        ws.send_text("hi").await.unwrap();
        drop(ws);
        let got = server.await.unwrap();
        // A masked pong with the ping's payload, then the masked text "hi".
        assert_eq!(got[0], 0x8A);
        assert_eq!(got[1], 0x81);
        assert_eq!(got[6] ^ got[2], b'p');
        assert_eq!(got[7], 0x81);
        assert_eq!(got[8], 0x82);
        let mask = &got[9..13];
        let text: Vec<u8> = got[13..15]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(text, b"hi");
    }

    #[tokio::test]
    async fn a_masked_server_frame_is_an_error() {
        let (mut ws, _server) = serve(vec![0x81, 0x81, 1, 2, 3, 4, b'a' ^ 1]).await;
        let e = ws.next().await.unwrap_err().to_string();
        assert!(e.contains("masked"), "{e}");
    }
}
