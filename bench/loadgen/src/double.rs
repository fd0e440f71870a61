//! `loadgen double`: answers like Legion, Scalef and Salekit answer a success, so storehook's
//! workers deliver everything, and counts what arrived.
//!
//! - Legion `POST /integration/flow-state/event/add/` (a JSON array of events) →
//!   `200 {"status": "success"}`
//! - Scalef `POST /api/v1/conversion` → `200 {"status": "success", "data": {"conversion":
//!   {"conversion_id": "<24 hex>", …}}}` (storehook keeps `data.conversion.conversion_id`)
//! - Scalef `POST /api/v1/update-conversion-status` → `200 {"status": "success", …}`
//! - Salekit `POST /api/v1/audience/create` → `200 {"error": false, "msg": "Thành công"}`
//! - `GET /counts` → the counts so far, as JSON
//! - anything else → 404
//!
//! On SIGINT or SIGTERM it prints the counts (JSON, one line) and exits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Body;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub const LEGION_EVENTS: &str = "/integration/flow-state/event/add/";
pub const SCALEF_CREATE: &str = "/api/v1/conversion";
pub const SCALEF_STATUS: &str = "/api/v1/update-conversion-status";
pub const SALEKIT_AUDIENCE: &str = "/api/v1/audience/create";

#[derive(Debug, clap::Args)]
pub struct DoubleArgs {
    /// Address to listen on; port 0 picks a free one (the first line printed names it).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Wait this long before each answer (e.g. 5ms), like a real service over the network.
    #[arg(long, default_value = "0s", value_parser = crate::parse_duration)]
    pub delay: Duration,
}

/// What arrived: requests per method and path, and deliveries per destination operation
/// (a Legion request carries several events).
#[derive(Default)]
pub struct Counts {
    requests: Mutex<BTreeMap<String, u64>>,
    legion_events: AtomicU64,
    scalef_create: AtomicU64,
    scalef_status: AtomicU64,
    salekit_audience: AtomicU64,
    conversions: AtomicU64,
}

impl Counts {
    pub fn json(&self) -> Value {
        let deliveries = [
            ("legion_events", &self.legion_events),
            ("scalef_create", &self.scalef_create),
            ("scalef_status", &self.scalef_status),
            ("salekit_audience", &self.salekit_audience),
        ]
        .map(|(name, n)| (name, n.load(Ordering::Relaxed)));
        let requests = self.requests.lock().expect("counts lock").clone();
        json!({
            "requests": requests,
            "total_requests": requests.values().sum::<u64>(),
            "deliveries": deliveries.iter().cloned().collect::<BTreeMap<_, _>>(),
            "total_deliveries": deliveries.iter().map(|(_, n)| n).sum::<u64>(),
        })
    }
}

static SUCCESS: LazyLock<Bytes> = LazyLock::new(|| Bytes::from_static(br#"{"status":"success"}"#));

fn answer(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .expect("a valid response")
}

/// Answers one request as the destination would.
pub async fn handle<B>(counts: &Counts, request: Request<B>) -> Response<Full<Bytes>>
where
    B: Body,
    B::Error: std::fmt::Display,
{
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(err) => {
            return answer(
                StatusCode::BAD_REQUEST,
                Bytes::from(json!({"error": err.to_string()}).to_string()),
            );
        }
    };
    if method == Method::GET && path == "/counts" {
        return answer(StatusCode::OK, Bytes::from(counts.json().to_string()));
    }
    *counts
        .requests
        .lock()
        .expect("counts lock")
        .entry(format!("{method} {path}"))
        .or_default() += 1;
    if method != Method::POST {
        return answer(StatusCode::NOT_FOUND, Bytes::from_static(b"{}"));
    }
    match path.as_str() {
        LEGION_EVENTS => {
            let events = match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Array(events)) => events.len() as u64,
                _ => 1,
            };
            counts.legion_events.fetch_add(events, Ordering::Relaxed);
            answer(StatusCode::OK, SUCCESS.clone())
        }
        SCALEF_CREATE => {
            counts.scalef_create.fetch_add(1, Ordering::Relaxed);
            let n = counts.conversions.fetch_add(1, Ordering::Relaxed) + 1;
            let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let body = json!({
                "status": "success",
                "data": {"conversion": {
                    "conversion_id": format!("{n:024x}"),
                    "click_id": sent["click_id"],
                    "campaign_id": sent["campaign_id"],
                    "order_id": sent["order_id"],
                    "status": "create_new",
                }}
            });
            answer(StatusCode::OK, Bytes::from(body.to_string()))
        }
        SCALEF_STATUS => {
            counts.scalef_status.fetch_add(1, Ordering::Relaxed);
            let body = json!({"status": "success", "data": {}, "message": "Success", "code": 0});
            answer(StatusCode::OK, Bytes::from(body.to_string()))
        }
        SALEKIT_AUDIENCE => {
            counts.salekit_audience.fetch_add(1, Ordering::Relaxed);
            answer(
                StatusCode::OK,
                Bytes::from(json!({"error": false, "msg": "Thành công"}).to_string()),
            )
        }
        _ => answer(StatusCode::NOT_FOUND, Bytes::from_static(b"{}")),
    }
}

pub async fn run(args: DoubleArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    let counts = Arc::new(Counts::default());
    let delay = args.delay;
    let serve = {
        let counts = counts.clone();
        async move {
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        eprintln!("double: accept failed: {err}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let counts = counts.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let counts = counts.clone();
                        async move {
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            Ok::<_, std::convert::Infallible>(handle(&counts, request).await)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        () = serve => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    println!("{}", counts.json());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(counts: &Counts, path: &str, body: &str) -> (StatusCode, Value) {
        let request = Request::post(path)
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let response = handle(counts, request).await;
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn answers_like_the_destinations_answer_a_success() {
        let counts = Counts::default();
        let (status, body) = post(&counts, LEGION_EVENTS, r#"[{"id":"a"},{"id":"b"}]"#).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (StatusCode::OK, Some("success"))
        );

        let (status, body) = post(&counts, SCALEF_CREATE, r#"{"click_id":"c"}"#).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "success");
        let id = body
            .pointer("/data/conversion/conversion_id")
            .and_then(Value::as_str)
            .unwrap();
        assert_eq!(id.len(), 24);
        let (_, again) = post(&counts, SCALEF_CREATE, "{}").await;
        assert_ne!(again.pointer("/data/conversion/conversion_id").unwrap(), id);

        let (status, body) = post(&counts, SCALEF_STATUS, "{}").await;
        assert_eq!(
            (status, body["status"].as_str()),
            (StatusCode::OK, Some("success"))
        );
        let (status, body) = post(&counts, SALEKIT_AUDIENCE, "{}").await;
        assert_eq!(
            (status, &body["error"]),
            (StatusCode::OK, &Value::Bool(false))
        );
        let (status, _) = post(&counts, "/elsewhere", "{}").await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let counted = counts.json();
        assert_eq!(counted["deliveries"]["legion_events"], 2);
        assert_eq!(counted["deliveries"]["scalef_create"], 2);
        assert_eq!(counted["deliveries"]["scalef_status"], 1);
        assert_eq!(counted["deliveries"]["salekit_audience"], 1);
        assert_eq!(counted["total_deliveries"], 6);
        assert_eq!(counted["requests"]["POST /elsewhere"], 1);
        assert_eq!(counted["total_requests"], 6);
    }
}
