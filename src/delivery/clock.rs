//! A worker's time: the wall time it gives the store (Unix milliseconds, as every time column
//! holds it), the monotonic time its pauses are measured in, and its sleeps. The system's by
//! default; a test takes a [`ManualClock`] and moves it on by hand, so that a lease expires
//! or a cool-down ends at once instead of after waiting for it. The rate limit keeps its own
//! clock (`governor`'s).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Where a worker takes its time from.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The system's clocks and tokio's timers.
    #[default]
    System,
    /// A test's: it stands still until [`ManualClock::advance`] moves it.
    Manual(ManualClock),
}

impl Clock {
    /// Unix time in milliseconds ([`crate::store::now_ms`] for the system's).
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => crate::store::now_ms(),
            Clock::Manual(manual) => manual.now_ms(),
        }
    }

    /// The monotonic time pauses are measured in.
    pub fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            Clock::Manual(manual) => manual.now(),
        }
    }

    /// Until `duration` has passed on this clock.
    pub async fn sleep(&self, duration: Duration) {
        match self {
            Clock::System => tokio::time::sleep(duration).await,
            Clock::Manual(manual) => manual.sleep(duration).await,
        }
    }
}

impl From<ManualClock> for Clock {
    fn from(manual: ManualClock) -> Self {
        Clock::Manual(manual)
    }
}

/// A clock that stands still until it is moved on; clones share one time.
#[derive(Clone, Debug)]
pub struct ManualClock {
    inner: Arc<Manual>,
}

#[derive(Debug)]
struct Manual {
    start: Instant,
    start_ms: i64,
    /// How far the clock was moved on since `start`; sleepers wait for it to pass their end.
    /// Held here, the sender lives as long as any sleeper's clone, so a sleep never ends
    /// because the clock was dropped.
    advanced: watch::Sender<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock stopped at the system's time now.
    pub fn new() -> Self {
        ManualClock {
            inner: Arc::new(Manual {
                start: Instant::now(),
                start_ms: crate::store::now_ms(),
                advanced: watch::Sender::new(Duration::ZERO),
            }),
        }
    }

    /// Moves the clock on by `by`, ending the sleeps that end within it.
    pub fn advance(&self, by: Duration) {
        self.inner.advanced.send_modify(|advanced| *advanced += by);
    }

    pub fn now_ms(&self) -> i64 {
        let advanced = *self.inner.advanced.borrow();
        self.inner.start_ms + i64::try_from(advanced.as_millis()).unwrap_or(i64::MAX)
    }

    pub fn now(&self) -> Instant {
        self.inner.start + *self.inner.advanced.borrow()
    }

    /// Until the clock has been moved on by `duration` from now.
    pub async fn sleep(&self, duration: Duration) {
        let mut advanced = self.inner.advanced.subscribe();
        let end = *advanced.borrow_and_update() + duration;
        // The sender is in `self`, so the wait ends only when the clock passes `end`.
        let _ = advanced.wait_for(|advanced| *advanced >= end).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_moves_only_when_advanced_and_then_ends_the_sleeps_due() {
        let clock = ManualClock::new();
        let (ms, instant) = (clock.now_ms(), clock.now());
        let short = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep(Duration::from_secs(5)).await }
        });
        let long = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep(Duration::from_secs(60)).await }
        });
        tokio::task::yield_now().await;
        assert_eq!((clock.now_ms(), clock.now()), (ms, instant), "still");
        clock.advance(Duration::from_secs(5));
        short.await.unwrap();
        assert_eq!(clock.now_ms(), ms + 5_000);
        assert_eq!(clock.now(), instant + Duration::from_secs(5));
        assert!(!long.is_finished(), "55 s left");
        clock.advance(Duration::from_secs(55));
        long.await.unwrap();
    }
}
