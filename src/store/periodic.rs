//! Periodic jobs run once per period by all the instances sharing a store, not once by
//! each: before a run, an instance claims it with [`super::Store::claim_run`], which
//! records the run's time in the table `periodic_runs` only when no run was recorded within
//! the period. The claim is one statement, an upsert whose update holds a condition, so of
//! instances claiming at once one wins; the others find the fresh time and skip. An instance
//! that dies after claiming leaves the job undone until the next period, when any instance
//! claims it again.

/// The retention purge (see [`super::Store::purge_before`]).
pub const RETENTION: &str = "retention";

/// The claim, the same SQL on both backends: `$1` the job, `$2` now, `$3` the time before
/// which the last run must lie (now less the period). Returns a row when claimed.
pub(super) const CLAIM: &str = "INSERT INTO periodic_runs (job, ran_at) VALUES ($1, $2) \
     ON CONFLICT (job) DO UPDATE SET ran_at = excluded.ran_at \
     WHERE periodic_runs.ran_at <= $3 \
     RETURNING job";
