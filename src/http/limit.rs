//! The cap on webhooks handled at once (`server.max_concurrent_requests`): a webhook beyond
//! it waits up to `server.concurrency_wait` for a free slot, then is answered `503
//! {"error": "busy"}` with `Retry-After`, instead of piling up until the shop's own client
//! gives up. Only the webhook route is counted: `/healthz` and `/readyz` answer whatever the
//! load.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::ServerLimits;
use crate::error::ApiError;
use crate::store::now_ms;

/// Refusals are logged at most this often, each line with how many there were since the
/// last: a flood of them must not become a flood of log lines.
const LOG_EVERY_MS: i64 = 1000;

#[derive(Clone)]
pub struct ConcurrencyLimit {
    slots: Arc<Semaphore>,
    max: usize,
    wait: Duration,
    refusals: Arc<Refusals>,
}

#[derive(Default)]
struct Refusals {
    /// Refused since the last log line.
    unlogged: AtomicU64,
    /// When the last line was logged (ms since the epoch; 0: never).
    logged_at_ms: AtomicI64,
}

impl ConcurrencyLimit {
    pub fn new(limits: &ServerLimits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
            max: limits.max_concurrent_requests,
            wait: limits.concurrency_wait,
            refusals: Arc::default(),
        }
    }

    /// A slot, waited for up to `concurrency_wait`; `None` when none freed in time. The slot
    /// is free again when the permit is dropped.
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Logs a refusal, or counts it for the next line when one was logged within a second.
    fn log_refusal(&self, path: &str) {
        let refusals = &self.refusals;
        refusals.unlogged.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        let last = refusals.logged_at_ms.load(Ordering::Relaxed);
        if now - last < LOG_EVERY_MS
            || refusals
                .logged_at_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let refused = refusals.unlogged.swap(0, Ordering::Relaxed);
        tracing::warn!(
            path,
            status = 503,
            code = "busy",
            refused,
            max_concurrent_requests = self.max,
            concurrency_wait = ?self.wait,
            "webhooks refused: every slot taken (server.max_concurrent_requests) and none freed within server.concurrency_wait; the shops retry after Retry-After. Raise the cap if the store keeps up, or add capacity"
        );
    }
}

/// The middleware of the webhook route: holds a slot from the request's headers to its
/// answer.
pub async fn limit_concurrency(
    State(limit): State<ConcurrencyLimit>,
    request: Request,
    next: Next,
) -> Response {
    match limit.acquire().await {
        Some(_slot) => next.run(request).await,
        None => {
            limit.log_refusal(request.uri().path());
            ApiError::Busy {
                max: limit.max,
                wait: limit.wait,
            }
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, wait_ms: u64) -> ServerLimits {
        ServerLimits {
            max_concurrent_requests: max,
            concurrency_wait: Duration::from_millis(wait_ms),
            ..ServerLimits::default()
        }
    }

    #[tokio::test]
    async fn a_slot_is_given_while_one_is_free_and_again_once_one_is_released() {
        let limit = ConcurrencyLimit::new(&limits(2, 50));
        let first = limit.acquire().await.expect("a free slot");
        let _second = limit.acquire().await.expect("a free slot");
        assert!(limit.acquire().await.is_none(), "both slots are taken");
        drop(first);
        assert!(limit.acquire().await.is_some(), "a released slot is free");
    }

    #[tokio::test]
    async fn a_request_waits_for_a_slot_freed_within_the_wait() {
        let limit = ConcurrencyLimit::new(&limits(1, 60_000));
        let held = limit.acquire().await.unwrap();
        let waiting = tokio::spawn({
            let limit = limit.clone();
            async move { limit.acquire().await.is_some() }
        });
        // On this single-threaded runtime the waiter runs at the yield, finds no slot and
        // waits; released then, the slot goes to it rather than it being refused.
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "no slot is free yet");
        drop(held);
        assert!(waiting.await.unwrap());
    }
}
