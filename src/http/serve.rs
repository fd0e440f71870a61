//! The accept loop: each connection served over HTTP/1 by hyper, watched so that a slow or
//! idle peer cannot hold it. A request must arrive whole (headers and body) within
//! `server.request_timeout` of its first byte: headers late close the connection; a body
//! late is answered `408` and the connection closed, before anything of it is stored. A
//! keep-alive connection with no request in progress is closed after `server.idle_timeout`.
//! On shutdown no connection is accepted any more, idle ones are closed, and requests in
//! progress are answered first.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Sleep;
use tower::ServiceExt as _;

use crate::config::ServerLimits;
use crate::error::ApiError;

mod connection;

use connection::{ConnectionClock, Verdict, WatchedStream};

/// How long the loop pauses after an accept error that is not one connection's (too many
/// open files): retrying at once would spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until `shutdown` completes, then waits for the requests in
/// progress to be answered (each bounded by `limits.request_timeout` for its arrival).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Answers are small and written whole: no reason to wait for more to send.
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(
                    stream,
                    peer,
                    router.clone(),
                    limits.clone(),
                    stopping.clone(),
                ));
            }
            Err(error) if is_one_connections(&error) => {}
            Err(error) => {
                tracing::error!(%error, "cannot accept connections; trying again in a second");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    drop(stopping);
    // Every connection holds a receiver until it is closed.
    stop.closed().await;
    Ok(())
}

/// An accept error that concerns one connection only (the peer gave up before it was taken).
fn is_one_connections(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

/// Serves one connection until the peer closes it, it is closed for being idle or late, or
/// the service stops.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ServerLimits,
    mut stopping: watch::Receiver<bool>,
) {
    let clock = Arc::new(ConnectionClock::new());
    let io = TokioIo::new(WatchedStream {
        inner: stream,
        clock: clock.clone(),
    });
    let request_timeout = limits.request_timeout;
    let service_clock = clock.clone();
    let service = hyper::service::service_fn(move |request| {
        answer(
            router.clone(),
            service_clock.clone(),
            request_timeout,
            peer,
            request,
        )
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        // The watch below bounds the headers (with the whole request's deadline, not one of
        // their own), and hyper's header timer would also close idle keep-alive connections.
        .header_read_timeout(None)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        let check_at = clock.next_check(&limits, closing);
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            _ = stopping.wait_for(|stop| *stop), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = clock.changed.notified() => {}
            () = tokio::time::sleep_until(check_at) => match clock.verdict(&limits) {
                Verdict::InTime => {}
                Verdict::Idle => {
                    if !closing {
                        tracing::debug!(%peer, "idle keep-alive connection closed");
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
                Verdict::HeadersLate => {
                    tracing::warn!(
                        %peer,
                        request_timeout = ?limits.request_timeout,
                        "connection closed: request headers not complete within server.request_timeout"
                    );
                    return;
                }
            },
        }
    }
}

/// Passes one request to the router with its body bound to the request's deadline; a body
/// that missed it makes the answer `408` and closes the connection.
async fn answer(
    router: Router,
    clock: Arc<ConnectionClock>,
    request_timeout: Duration,
    peer: SocketAddr,
    mut request: Request<Incoming>,
) -> Result<Response<AnswerBody>, Infallible> {
    // The peer's address, for the handlers that read it (the admin surface's throttle).
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let started = clock.request_started();
    let late = Arc::new(AtomicBool::new(false));
    let method = request.method().clone();
    let uri = request.uri().clone();
    let request = request.map(|body| {
        Body::new(DeadlineBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep_until(started + request_timeout)),
            limit: request_timeout,
            late: late.clone(),
        })
    });
    let Ok(mut response) = router.oneshot(request).await;
    if late.load(Ordering::Acquire) {
        if response.status() != StatusCode::REQUEST_TIMEOUT {
            // A route that does not name the deadline itself (the webhook route does, in its
            // own log line).
            tracing::warn!(%method, path = uri.path(), request_timeout = ?request_timeout, status = 408, "request body not complete within server.request_timeout: answered 408, connection closed");
            response = ApiError::RequestTimeout {
                limit: request_timeout,
            }
            .into_response();
        }
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response.map(|body| AnswerBody {
        inner: body,
        clock: clock.clone(),
    }))
}

/// The error a request body gives once its deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("the request was not complete within {limit:?}")]
pub struct RequestTimedOut {
    pub limit: Duration,
}

impl RequestTimedOut {
    /// The deadline's error, wherever it sits in `error`'s chain of sources.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Self> {
        let mut next = Some(error);
        while let Some(error) = next {
            if let Some(timed_out) = error.downcast_ref::<Self>() {
                return Some(timed_out);
            }
            next = error.source();
        }
        None
    }
}

/// A request body that ends in [`RequestTimedOut`] when it is not complete by its deadline.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    limit: Duration,
    /// Set when the deadline passed, for [`answer`].
    late: Arc<AtomicBool>,
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.late.store(true, Ordering::Release);
                    Poll::Ready(Some(Err(RequestTimedOut { limit: self.limit }.into())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that tells the connection's clock when it is gone (written, or the
/// connection lost): the connection is idle from then on.
pub struct AnswerBody {
    inner: Body,
    clock: Arc<ConnectionClock>,
}

impl hyper::body::Body for AnswerBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for AnswerBody {
    fn drop(&mut self) {
        self.clock.answered();
    }
}
