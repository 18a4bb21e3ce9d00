//! Time limits on plain HTTP connections (slow-loris, stalled bodies, idle keep-alive), over
//! raw TCP so the client can stall exactly where it wants.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sockudo_server::RunningServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// header-read 1 s, keep-alive 2 s, request 1 s.
async fn server() -> RunningServer {
    let mut cfg = config();
    cfg.http_api.header_read_timeout_secs = 1;
    cfg.http_api.keep_alive_timeout_secs = 2;
    cfg.http_api.request_timeout_secs = 1;
    start(cfg).await
}

/// Reads until the server closes; returns what it sent and how long that took. Fails if the
/// connection is still open after `within`.
async fn read_until_closed(tcp: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = within
            .checked_sub(started.elapsed())
            .expect("the server did not close the connection in time");
        match tokio::time::timeout(left, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "still open after {within:?}; received {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

fn timed_out(server: &RunningServer, phase: &str) -> f64 {
    metric_sum(
        server,
        &format!("sockudo_http_connections_timed_out_total{{listener=\"main\",phase=\"{phase}\"}}"),
    )
}

#[tokio::test]
async fn a_request_head_sent_slowly_is_cut_off() {
    let server = server().await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    // Slow-loris: a byte of head every 300 ms never completes it within the 1 s limit.
    for chunk in ["GET /li", "ve HTTP/1.1\r\n", "Host: x\r\n", "X-Slow: 1\r\n"] {
        if tcp.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (got, _) = read_until_closed(&mut tcp, Duration::from_secs(10)).await;
    let took = started.elapsed();
    assert!(
        got.is_empty(),
        "no response to a head never finished: {got:?}"
    );
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );
    assert_eq!(timed_out(&server, "header_read"), 1.0);
}

#[tokio::test]
async fn a_connection_that_never_sends_is_closed() {
    let server = server().await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let (got, took) = read_until_closed(&mut tcp, Duration::from_secs(10)).await;
    assert!(got.is_empty());
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );
}

#[tokio::test]
async fn a_body_that_never_arrives_is_cut_off() {
    let server = server().await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /apps/{APP_ID}/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"name\":"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let (_, took) = read_until_closed(&mut tcp, Duration::from_secs(10)).await;
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );
    assert_eq!(timed_out(&server, "request"), 1.0);
}

#[tokio::test]
async fn keep_alive_lasts_its_limit_and_requests_renew_it() {
    let server = server().await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let request = b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n";
    // Requests every 700 ms for 3.5 s: past every limit in total, never idle for one.
    for _ in 0..5 {
        tcp.write_all(request).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("a response")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // Then idle: closed after the keep-alive limit (2 s), not the header limit (1 s).
    let (got, took) = read_until_closed(&mut tcp, Duration::from_secs(10)).await;
    assert!(got.is_empty());
    assert!(
        took >= Duration::from_millis(1_200),
        "closed after {took:?}, before the keep-alive limit"
    );
    assert_eq!(timed_out(&server, "keep_alive"), 1.0);
}

#[tokio::test]
async fn websockets_outlive_the_http_limits() {
    let server = server().await;
    let mut c = connect(&server).await;
    // Past the header, request and keep-alive limits: the upgraded socket is not HTTP anymore.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    c.subscribe("still-here").await;
    let api = Api::new(&server);
    assert_eq!(api.trigger("still-here", "e", "d").await.0, 200);
    assert_eq!(c.expect_event("e").await["channel"], "still-here");
    for phase in ["header_read", "request", "keep_alive"] {
        assert_eq!(timed_out(&server, phase), 0.0, "{phase}");
    }
}

#[tokio::test]
async fn zero_means_no_limit() {
    let mut cfg = config();
    cfg.http_api.header_read_timeout_secs = 0;
    cfg.http_api.keep_alive_timeout_secs = 0;
    cfg.http_api.request_timeout_secs = 0;
    let server = start(cfg).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /li").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    tcp.write_all(b"ve HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("a response")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_stalled_client_does_not_hold_up_shutdown() {
    let server = server().await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /live HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The drain lets requests in flight finish, but this head never will: the header limit
    // (1 s) ends the connection and with it the drain.
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown finished despite the stalled client");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(tcp);
}

#[tokio::test]
async fn the_metrics_port_has_the_same_limits() {
    let server = server().await;
    let metrics = server.metrics_addr.expect("a metrics port");
    let mut tcp = TcpStream::connect(metrics).await.unwrap();
    tcp.write_all(b"GET /metr").await.unwrap();
    let (got, took) = read_until_closed(&mut tcp, Duration::from_secs(10)).await;
    assert!(got.is_empty());
    assert!(
        took >= Duration::from_millis(700),
        "closed too early: {took:?}"
    );
    assert_eq!(
        metric_sum(
            &server,
            "sockudo_http_connections_timed_out_total{listener=\"metrics\",phase=\"header_read\"}"
        ),
        1.0
    );
    // And it still answers a whole request.
    let body = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("sockudo_connections"), "{body}");
}
