//! Heartbeats: each `serve` instance says in its store that it is running. It writes its row
//! when it starts (before it serves), refreshes it every [`BEAT_EVERY`] and removes it when
//! it stops cleanly; a killed instance leaves its row behind, which goes stale after
//! [`FRESH_FOR`] and is forgotten by the next instance's beat after [`FORGET_AFTER`].
//! `storehook copy-store` refuses a source with a fresh heartbeat ([`super::copy`]).
//!
//! A row in the store, not a lock: it works the same on both backends and across hosts
//! sharing one PostgreSQL, it names the instance (host, pid, when it started) in the
//! refusal, and it needs no connection held open for the instance's life. Its one blind
//! spot is the [`FRESH_FOR`] after a crash, when a dead instance still looks alive.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use super::{Store, now_ms};

/// How often a running instance refreshes its heartbeat.
pub const BEAT_EVERY: Duration = Duration::from_secs(5);
/// How long a heartbeat says its instance is running: four beats, so that a beat delayed by
/// a busy store (or a clock a little ahead) does not make a running instance look stopped.
pub const FRESH_FOR: Duration = Duration::from_secs(20);
/// How long after its last beat a heartbeat is removed by another instance's beat.
pub const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// One `serve` instance's heartbeat, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heartbeat {
    /// Made when the instance starts: its host, its process id and a random part.
    pub instance: String,
    pub host: String,
    pub pid: i64,
    /// Unix time in milliseconds, by the instance's clock.
    pub started_at: i64,
    /// When it last beat (Unix time in milliseconds, by the instance's clock).
    pub seen_at: i64,
}

impl Heartbeat {
    /// This process's heartbeat, started and seen at `now_ms`.
    pub fn of_this_process(now_ms: i64) -> Heartbeat {
        let host = host_name();
        let pid = std::process::id();
        Heartbeat {
            instance: format!("{host}/{pid}/{:08x}", fastrand::u32(..)),
            host,
            pid: i64::from(pid),
            started_at: now_ms,
            seen_at: now_ms,
        }
    }

    /// Whether its instance beat within [`FRESH_FOR`] of `now_ms`: it is running, or was
    /// killed less than that long ago.
    pub fn is_fresh(&self, now_ms: i64) -> bool {
        self.seen_at >= now_ms - millis(FRESH_FOR)
    }
}

impl std::fmt::Display for Heartbeat {
    /// `instance I (host H, pid P), started T0, last beat T1`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "instance {} (host {}, pid {}), started {}, last beat {}",
            self.instance,
            self.host,
            self.pid,
            shown_time(self.started_at),
            shown_time(self.seen_at)
        )
    }
}

/// A Unix time in milliseconds as RFC 3339 (UTC), or the number when it is out of range.
pub(crate) fn shown_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn host_name() -> String {
    #[cfg(unix)]
    {
        let uname = rustix::system::uname();
        let name = uname.nodename().to_string_lossy();
        if !name.is_empty() {
            return name.into_owned();
        }
    }
    std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown-host".to_string())
}

/// Writes this instance's first heartbeat (a failure is logged: the instance serves anyway),
/// then beats every [`BEAT_EVERY`] until the stop, and removes its heartbeat once stopped.
/// `serve` awaits this before it listens, so that an instance that answers is already seen
/// as running; the returned task ends after the removal.
pub async fn start(
    store: Arc<dyn Store>,
    mut stopped: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let mut heartbeat = Heartbeat::of_this_process(now_ms());
    beat(&*store, &heartbeat).await;
    tracing::debug!(instance = %heartbeat.instance, "heartbeat recorded");
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(BEAT_EVERY) => {}
                _ = stopped.wait_for(|stop| *stop) => break,
            }
            heartbeat.seen_at = now_ms();
            beat(&*store, &heartbeat).await;
        }
        if let Err(error) = store.remove_heartbeat(&heartbeat.instance).await {
            tracing::warn!(%error, instance = %heartbeat.instance, "cannot remove this instance's heartbeat; it goes stale");
        }
    })
}

async fn beat(store: &dyn Store, heartbeat: &Heartbeat) {
    let forget_before = heartbeat.seen_at - millis(FORGET_AFTER);
    if let Err(error) = store.record_heartbeat(heartbeat, forget_before).await {
        tracing::warn!(%error, "cannot record this instance's heartbeat; tried again in a few seconds");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_is_fresh_for_a_few_beats_and_names_its_instance() {
        let heartbeat = Heartbeat::of_this_process(1_700_000_000_000);
        assert!(heartbeat.is_fresh(heartbeat.seen_at));
        assert!(heartbeat.is_fresh(heartbeat.seen_at + millis(FRESH_FOR)));
        assert!(!heartbeat.is_fresh(heartbeat.seen_at + millis(FRESH_FOR) + 1));
        assert!(FRESH_FOR >= 3 * BEAT_EVERY);
        let shown = heartbeat.to_string();
        assert!(
            shown.contains(&format!("pid {}", std::process::id())),
            "{shown}"
        );
        assert!(shown.contains("started 2023-11-14T22:13:20Z"), "{shown}");
        assert!(!heartbeat.host.is_empty());
    }
}
