//! How much a round takes and when a failed attempt is tried again: the retry schedule is
//! data (the destination's `retry_schedule`), read here.

use std::time::Duration;

use crate::config::DestinationConfig;

/// The most requests a round holds per lane (see `round_size`).
pub(super) const MAX_REQUESTS_PER_LANE: usize = 8;

/// How many deliveries a round of `destination` claims: `concurrency` lanes of requests of
/// `max_batch` deliveries (1 for a destination that takes one a request), and as many
/// requests a lane as end within the `lease` even if each takes its whole `timeout`
/// and the rate limit spaces them, up to `MAX_REQUESTS_PER_LANE`, and at least one. A
/// round is two writes (its claim; its record with the next round's claim) whatever it
/// holds: with one request a lane, a destination that takes one delivery a request would
/// cost the store a record for every few deliveries.
pub fn round_size(destination: &DestinationConfig, max_batch: usize, lease: Duration) -> usize {
    let lanes = destination.concurrency.max(1);
    let by_timeout = lease.as_millis() / destination.timeout.as_millis().max(1);
    let by_rate = destination.rate_limit_per_second.map_or(u128::MAX, |rate| {
        (lease.as_secs_f64() * f64::from(rate.get()) / lanes as f64) as u128
    });
    let per_lane = by_timeout
        .min(by_rate)
        .min(MAX_REQUESTS_PER_LANE as u128)
        .max(1) as usize;
    max_batch.max(1) * lanes * per_lane
}

/// The wait before the next attempt after `attempts` failed ones: the schedule's step with
/// ±20 % jitter, never shorter than the destination's `Retry-After`; `None` past the end.
pub fn next_retry(
    schedule: &[Duration],
    attempts: i64,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let step = *schedule.get(usize::try_from(attempts - 1).ok()?)?;
    let jittered = step.mul_f64(0.8 + 0.4 * fastrand::f64());
    Some(retry_after.map_or(jittered, |after| after.max(jittered)))
}

/// A duration in the store's milliseconds.
pub(super) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_follow_the_schedule_with_jitter_and_respect_retry_after() {
        let schedule = [Duration::from_secs(5), Duration::from_secs(30)];
        for _ in 0..100 {
            let first = next_retry(&schedule, 1, None).unwrap();
            assert!(
                first >= Duration::from_secs(4) && first <= Duration::from_secs(6),
                "{first:?}"
            );
            let second = next_retry(&schedule, 2, None).unwrap();
            assert!(second >= Duration::from_secs(24) && second <= Duration::from_secs(36));
            let slowed = next_retry(&schedule, 1, Some(Duration::from_secs(60))).unwrap();
            assert_eq!(slowed, Duration::from_secs(60));
        }
        assert_eq!(next_retry(&schedule, 3, None), None, "past the end: dead");
    }

    #[test]
    fn a_round_holds_several_requests_a_lane_within_its_lease_and_rate() {
        let config =
            crate::config::Config::parse(crate::config::EMBEDDED, "storehook.toml", &|_| None)
                .expect("the shipped configuration loads");
        let mut salekit = config.destinations["salekit"].clone();
        salekit.rate_limit_per_second = None;
        let minute = Duration::from_secs(60);
        // 4 lanes, 10 s time-outs: 6 requests a lane end within a 60 s lease.
        assert_eq!(round_size(&salekit, 1, minute), 24);
        assert_eq!(
            round_size(&salekit, 50, minute),
            1200,
            "Legion's batches of 50"
        );
        assert_eq!(
            round_size(&salekit, 1, Duration::from_secs(3600)),
            4 * MAX_REQUESTS_PER_LANE,
            "at most"
        );
        assert_eq!(
            round_size(&salekit, 1, Duration::from_secs(5)),
            4,
            "one at least"
        );
        salekit.timeout = Duration::from_secs(1);
        salekit.rate_limit_per_second = std::num::NonZeroU32::new(1);
        // 60 requests pass a limit of 1/s within the lease: 15 a lane, so the bound is 8.
        assert_eq!(round_size(&salekit, 1, minute), 4 * MAX_REQUESTS_PER_LANE);
        // 10 s at 2/s: 20 requests, 5 a lane.
        salekit.rate_limit_per_second = std::num::NonZeroU32::new(2);
        assert_eq!(round_size(&salekit, 1, Duration::from_secs(10)), 20);
    }
}
