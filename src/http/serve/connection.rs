//! The watch over one connection: where it is in its cycle (idle, a request's headers
//! arriving, a request with the router) and when it is due to be closed.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::ServerLimits;

/// Where a connection is in its cycle, for the watch over it.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No request in progress since then.
    Idle(Instant),
    /// The first bytes of a request arrived then; its headers are not complete yet.
    Headers(Instant),
    /// A request is with the router; its body is bound by its own deadline.
    Answering,
}

/// What the watch decides at a check.
pub(super) enum Verdict {
    InTime,
    Idle,
    HeadersLate,
}

pub(super) struct ConnectionClock {
    phase: Mutex<Phase>,
    /// Woken at every change of phase, so that the watch sleeps until the right deadline.
    pub(super) changed: Notify,
}

impl ConnectionClock {
    pub(super) fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Idle(Instant::now())),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        // A panic elsewhere cannot leave a phase half-written: it is one plain value.
        self.phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, phase: Phase) {
        *self.phase() = phase;
        self.changed.notify_one();
    }

    /// Bytes arrived: on an idle connection, they start a request and its deadline.
    pub(super) fn bytes_read(&self) {
        let mut phase = self.phase();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Headers(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// A request's headers are complete; returns when its first byte arrived.
    pub(super) fn request_started(&self) -> Instant {
        let started = match *self.phase() {
            Phase::Headers(since) => since,
            // Already buffered with the request before it (pipelined): its deadline starts now.
            Phase::Idle(_) | Phase::Answering => Instant::now(),
        };
        self.set(Phase::Answering);
        started
    }

    pub(super) fn answered(&self) {
        self.set(Phase::Idle(Instant::now()));
    }

    /// When the watch next has something to decide (an idle connection already closing has
    /// nothing left to decide: hyper closes it).
    pub(super) fn next_check(&self, limits: &ServerLimits, closing: bool) -> Instant {
        match *self.phase() {
            Phase::Idle(_) if closing => Instant::now() + limits.idle_timeout,
            Phase::Idle(since) => since + limits.idle_timeout,
            Phase::Headers(since) => since + limits.request_timeout,
            // Nothing to decide until the phase changes (the body has its own deadline).
            Phase::Answering => Instant::now() + limits.idle_timeout,
        }
    }

    pub(super) fn verdict(&self, limits: &ServerLimits) -> Verdict {
        let now = Instant::now();
        match *self.phase() {
            Phase::Idle(since) if now >= since + limits.idle_timeout => Verdict::Idle,
            Phase::Headers(since) if now >= since + limits.request_timeout => Verdict::HeadersLate,
            _ => Verdict::InTime,
        }
    }
}

/// The connection's socket, telling its clock when bytes arrive.
pub(super) struct WatchedStream {
    pub(super) inner: TcpStream,
    pub(super) clock: Arc<ConnectionClock>,
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes_read();
        }
        read
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
