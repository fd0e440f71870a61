//! Destination doubles: real HTTP servers on 127.0.0.1 that record every request and answer
//! from a queue of canned answers, then with a default one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Received {
    /// When the request arrived.
    pub at: std::time::Instant,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

/// A canned answer: status, headers, body.
pub type Answer = (u16, Vec<(&'static str, &'static str)>, String);

/// A double: records requests, answers from a queue (then `200 {}`).
#[derive(Clone)]
pub struct Double {
    received: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<VecDeque<Answer>>>,
    default: Arc<dyn Fn(&Received) -> Answer + Send + Sync>,
    /// How long it takes to answer.
    delay: std::time::Duration,
}

impl Double {
    pub async fn start() -> (Double, String) {
        Self::start_with(|_| (200, vec![], "{}".into())).await
    }

    /// A double whose answer, once the queue is empty, is `default(request)`.
    pub async fn start_with(
        default: impl Fn(&Received) -> Answer + Send + Sync + 'static,
    ) -> (Double, String) {
        Self::start_slow(std::time::Duration::ZERO, default).await
    }

    /// [`Double::start_with`], taking `delay` to answer each request.
    pub async fn start_slow(
        delay: std::time::Duration,
        default: impl Fn(&Received) -> Answer + Send + Sync + 'static,
    ) -> (Double, String) {
        let double = Double {
            received: Arc::default(),
            answers: Arc::default(),
            default: Arc::new(default),
            delay,
        };
        let state = double.clone();
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move {
                tokio::time::sleep(state.delay).await;
                let received = Received {
                    at: std::time::Instant::now(),
                    path: uri.path().to_string(),
                    headers,
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                };
                let queued = state.answers.lock().unwrap().pop_front();
                let (status, headers, body) = queued.unwrap_or_else(|| (state.default)(&received));
                state.received.lock().unwrap().push(received);
                let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
                for (name, value) in headers {
                    response.headers_mut().insert(name, value.parse().unwrap());
                }
                response
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (double, url)
    }

    pub fn answer(&self, status: u16, headers: Vec<(&'static str, &'static str)>, body: &str) {
        self.answers
            .lock()
            .unwrap()
            .push_back((status, headers, body.to_string()));
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}
