//! The limits that let storehook face the open internet, over raw TCP against the real
//! server: a slow sender is cut off at the request deadline (and not before) while other
//! webhooks are answered; an idle keep-alive connection is closed; beyond the cap on
//! concurrent webhooks the answer is `503` with `Retry-After`; nothing half-received is
//! stored. Deadlines are short here and every wait is bounded; the only timing checks are
//! bounds that cause and effect guarantee (the server cannot answer before its deadline
//! started) and generous upper ones.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

/// Far more than any deadline here: a server that has not acted by then never will.
const MARGIN: Duration = Duration::from_secs(15);
/// How often a slow sender sends its next byte.
const TRICKLE_EVERY: Duration = Duration::from_millis(100);

/// A paid Haravan order with its own id, as the shop signs it: (headers, body).
fn signed_order(id: u64) -> (Vec<(String, String)>, Vec<u8>) {
    let fixture = fixture("haravan", "paid-two-items-discount");
    let mut order: serde_json::Value = serde_json::from_slice(&fixture.body).unwrap();
    order["id"] = id.into();
    let body = serde_json::to_vec(&order).unwrap();
    (signed_headers(&fixture, &body, secret_of("haravan")), body)
}

/// The head of a `POST /webhooks/haravan` with `headers` and a body of `length` bytes.
fn request_head(headers: &[(String, String)], length: usize) -> String {
    let mut head = format!(
        "POST /webhooks/haravan HTTP/1.1\r\nHost: storehook.test\r\nContent-Length: {length}\r\n"
    );
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("content-length") && !name.eq_ignore_ascii_case("host") {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("\r\n");
    head
}

async fn connect(app: &TestApp) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    TcpStream::connect(address).await.unwrap()
}

/// What the server did to a connection so far, without waiting.
#[derive(Debug, PartialEq)]
enum Heard {
    Nothing,
    Answer,
    Closed,
}

fn heard(stream: &TcpStream, received: &mut Vec<u8>) -> Heard {
    let mut buf = [0u8; 4096];
    match stream.try_read(&mut buf) {
        Ok(0) => Heard::Closed,
        Ok(n) => {
            received.extend_from_slice(&buf[..n]);
            Heard::Answer
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Heard::Nothing,
        Err(_) => Heard::Closed,
    }
}

/// Reads until the server closes the connection (bounded by [`MARGIN`]); a reset counts as
/// closed.
async fn read_to_close(stream: &mut TcpStream, received: &mut Vec<u8>) {
    let read = tokio::time::timeout(MARGIN, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server did not close the connection within {MARGIN:?}; received {}",
        String::from_utf8_lossy(received)
    );
}

/// Reads one whole response (its head and `Content-Length` body) from a kept-alive
/// connection: (status line, body).
async fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut received = Vec::new();
    tokio::time::timeout(MARGIN, async {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = memchr::memmem::find(&received, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&received[..end]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if received.len() >= end + 4 + length {
                    let status = head.lines().next().unwrap().to_string();
                    return (status, received[end + 4..end + 4 + length].to_vec());
                }
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a whole response: {received:?}");
            received.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("a response in time")
}

/// The status, the `Retry-After` and the body of a whole response read to the close.
fn parse(received: &[u8]) -> (u16, Option<String>, serde_json::Value) {
    let text = String::from_utf8_lossy(received);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {text}"));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let retry_after = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("retry-after")
            .then(|| value.trim().to_string())
    });
    (status, retry_after, serde_json::from_str(body).unwrap())
}

/// Polls until every slot of the webhook route is taken: an unsigned probe gets a slot and is
/// refused 401 (never stored) until then, and `503` after.
async fn wait_until_every_slot_is_taken(app: &TestApp) {
    let deadline = Instant::now() + MARGIN;
    loop {
        let probe = app
            .post_raw("haravan", &[], b"{\"probe\":true}".to_vec())
            .await;
        match probe.status().as_u16() {
            503 => return,
            401 => assert!(
                Instant::now() < deadline,
                "the slow senders never took the slots"
            ),
            other => panic!("a probe answered {other}"),
        }
    }
}

/// The bodies of every stored webhook, oldest first.
async fn stored_bodies(app: &TestApp) -> Vec<Vec<u8>> {
    app.inbox().await.into_iter().map(|w| w.body).collect()
}

#[tokio::test]
async fn a_slow_body_is_answered_408_at_the_deadline_while_other_webhooks_are_answered() {
    let deadline = Duration::from_secs(2);
    let app = spawn_app_configured(
        |_| {},
        |config| {
            config.limits.request_timeout = deadline;
            config.limits.concurrency_wait = Duration::from_millis(500);
        },
    )
    .await;
    let (headers, body) = signed_order(9_001);
    let (normal_headers, normal_body) = signed_order(9_002);

    let started = Instant::now();
    let mut slow = connect(&app).await;
    slow.write_all(request_head(&headers, body.len()).as_bytes())
        .await
        .unwrap();
    let mut sent = 0;
    let mut received = Vec::new();
    let mut open_before_deadline = 0;
    let mut normal_answered = false;
    let heard_at = loop {
        match heard(&slow, &mut received) {
            Heard::Nothing => {
                if Instant::now() < started + deadline {
                    open_before_deadline += 1;
                }
            }
            Heard::Answer | Heard::Closed => break Instant::now(),
        }
        assert!(
            started.elapsed() < deadline + MARGIN,
            "the slow sender was not cut off"
        );
        // One byte at a time, never the last: the body is never complete.
        if sent + 1 < body.len() && slow.write_all(&body[sent..=sent]).await.is_ok() {
            sent += 1;
        }
        if !normal_answered {
            let response = app
                .post_raw("haravan", &normal_headers, normal_body.clone())
                .await;
            assert_eq!(response.status(), 200, "a webhook sent while one trickles");
            normal_answered = true;
        }
        tokio::time::sleep(TRICKLE_EVERY).await;
    };
    assert!(
        open_before_deadline > 0,
        "the slow sender was never seen open before its deadline"
    );
    assert!(
        heard_at >= started + deadline,
        "cut off {:?} after the request began, before its deadline of {deadline:?}",
        heard_at - started
    );
    read_to_close(&mut slow, &mut received).await;
    let (status, _, answer) = parse(&received);
    assert_eq!(status, 408, "{answer}");
    assert_eq!(answer["error"], "request_timeout", "{answer}");

    // Only the whole webhook is stored, with its deliveries; of the slow one, nothing.
    assert_eq!(stored_bodies(&app).await, vec![normal_body]);
    let inbox = app.inbox().await;
    let deliveries = app.deliveries().await;
    assert!(!deliveries.is_empty());
    assert!(
        deliveries.iter().all(|d| d.0 == inbox[0].id),
        "{deliveries:?}"
    );
}

#[tokio::test]
async fn headers_not_complete_by_the_deadline_close_the_connection_unanswered() {
    let deadline = Duration::from_secs(1);
    let app = spawn_app_configured(
        |_| {},
        |config| {
            config.limits.request_timeout = deadline;
            config.limits.concurrency_wait = Duration::from_millis(500);
        },
    )
    .await;
    let started = Instant::now();
    let mut slow = connect(&app).await;
    slow.write_all(b"POST /webhooks/haravan HTTP/1.1\r\nHost: storehook.test\r\nX-Slow: ")
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut open_before_deadline = 0;
    let closed_at = loop {
        match heard(&slow, &mut received) {
            Heard::Nothing if Instant::now() < started + deadline => open_before_deadline += 1,
            Heard::Nothing => {}
            Heard::Answer | Heard::Closed => break Instant::now(),
        }
        assert!(
            started.elapsed() < deadline + MARGIN,
            "the slow headers were not cut off"
        );
        // A write to a connection the server has closed may fail: the next look sees it.
        let _ = slow.write_all(b"a").await;
        tokio::time::sleep(TRICKLE_EVERY).await;
    };
    assert!(open_before_deadline > 0);
    assert!(closed_at >= started + deadline);
    read_to_close(&mut slow, &mut received).await;
    assert!(
        received.is_empty(),
        "no answer to a request whose headers never came: {}",
        String::from_utf8_lossy(&received)
    );
    assert_eq!(
        app.client
            .get(format!("{}/healthz", app.address))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(stored_bodies(&app).await.is_empty());
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_secs(1);
    let app = spawn_app_configured(|_| {}, |config| config.limits.idle_timeout = idle).await;
    let mut stream = connect(&app).await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: storehook.test\r\n\r\n";
    stream.write_all(request).await.unwrap();
    let (status, _) = read_response(&mut stream).await;
    assert!(status.contains(" 200"), "{status}");
    // Kept alive: a second request on the same connection is answered.
    let second_sent = Instant::now();
    stream.write_all(request).await.unwrap();
    let (status, body) = read_response(&mut stream).await;
    assert!(status.contains(" 200"), "{status}");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["status"],
        "ok"
    );

    let mut rest = Vec::new();
    read_to_close(&mut stream, &mut rest).await;
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        second_sent.elapsed() >= idle,
        "closed {:?} after the last request, before the idle timeout",
        second_sent.elapsed()
    );
}

#[tokio::test]
async fn beyond_the_cap_a_webhook_is_answered_503_with_retry_after_and_nothing_is_half_stored() {
    let app = spawn_app_configured(
        |_| {},
        |config| {
            config.limits.max_concurrent_requests = 2;
            config.limits.concurrency_wait = Duration::from_millis(200);
            config.limits.request_timeout = Duration::from_secs(60);
        },
    )
    .await;
    // Two slow senders take both slots: their heads and the first half of their bodies.
    let mut holders = Vec::new();
    for id in [9_101, 9_102] {
        let (headers, body) = signed_order(id);
        let mut stream = connect(&app).await;
        stream
            .write_all(request_head(&headers, body.len()).as_bytes())
            .await
            .unwrap();
        stream.write_all(&body[..body.len() / 2]).await.unwrap();
        holders.push((stream, body));
    }
    wait_until_every_slot_is_taken(&app).await;

    let (busy_headers, busy_body) = signed_order(9_103);
    let busy = app
        .post_raw("haravan", &busy_headers, busy_body.clone())
        .await;
    assert_eq!(busy.status(), 503);
    assert_eq!(busy.headers()["retry-after"], "5");
    let answer = json_of(busy).await;
    assert_eq!(answer["error"], "busy", "{answer}");
    // Health checks are not counted against the cap.
    for path in ["/healthz", "/readyz"] {
        let health = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200, "{path}");
    }
    assert!(
        stored_bodies(&app).await.is_empty(),
        "nothing stored while every slot is held"
    );

    // One holder finishes its body and is answered; the other gives up halfway.
    let (mut finished, finished_body) = holders.remove(0);
    finished
        .write_all(&finished_body[finished_body.len() / 2..])
        .await
        .unwrap();
    let (status, body) = read_response(&mut finished).await;
    assert!(
        status.contains(" 200"),
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    let (abandoned, _) = holders.remove(0);
    drop(abandoned);

    // The shop's retry of the refused webhook is taken now that a slot is free.
    let retry = app
        .post_raw("haravan", &busy_headers, busy_body.clone())
        .await;
    assert_eq!(retry.status(), 200);
    assert_eq!(stored_bodies(&app).await, vec![finished_body, busy_body]);
}

#[tokio::test]
async fn a_stop_closes_idle_keep_alive_connections_at_once_and_answers_a_request_in_progress() {
    let mut app = spawn_app_configured(
        |_| {},
        |config| {
            config.limits.idle_timeout = Duration::from_secs(3600);
            config.limits.max_concurrent_requests = 1;
            config.limits.concurrency_wait = Duration::from_millis(200);
        },
    )
    .await;
    let mut idle = connect(&app).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: storehook.test\r\n\r\n")
        .await
        .unwrap();
    let (status, _) = read_response(&mut idle).await;
    assert!(status.contains(" 200"), "{status}");
    // A webhook whose body is still on its way when the stop comes.
    let (headers, body) = signed_order(9_201);
    let mut in_progress = connect(&app).await;
    in_progress
        .write_all(request_head(&headers, body.len()).as_bytes())
        .await
        .unwrap();
    in_progress.write_all(&body[..10]).await.unwrap();
    // Its headers are in: it holds the one slot.
    wait_until_every_slot_is_taken(&app).await;

    let stopping = tokio::spawn(async move {
        app.stop().await;
        app
    });
    // The idle connection is closed at once, not after its hour.
    let mut rest = Vec::new();
    read_to_close(&mut idle, &mut rest).await;
    assert!(rest.is_empty(), "{rest:?}");
    // The one in progress is still answered, and the stop then completes.
    in_progress.write_all(&body[10..]).await.unwrap();
    let mut received = Vec::new();
    read_to_close(&mut in_progress, &mut received).await;
    let (status, _, answer) = parse(&received);
    assert_eq!(status, 200, "{answer}");
    let app = tokio::time::timeout(MARGIN, stopping)
        .await
        .expect("the stop completes once the request is answered")
        .unwrap();
    assert_eq!(stored_bodies(&app).await, vec![body]);
}
