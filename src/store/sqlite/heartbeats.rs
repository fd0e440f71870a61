//! The heartbeats of the `serve` instances running on this store (see
//! [`crate::store::heartbeat`]): one row per instance, by its id.

use rusqlite::{Connection, params};

use crate::store::{Heartbeat, StoreError};

/// Writes `heartbeat` (its `seen_at` refreshed when its row is there) and removes the rows
/// last seen before `forget_before_ms`.
pub(super) fn record(
    conn: &Connection,
    heartbeat: &Heartbeat,
    forget_before_ms: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO heartbeats (instance, host, pid, started_at, seen_at) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (instance) DO UPDATE SET seen_at = excluded.seen_at",
    )?
    .execute(params![
        heartbeat.instance,
        heartbeat.host,
        heartbeat.pid,
        heartbeat.started_at,
        heartbeat.seen_at
    ])?;
    conn.prepare_cached("DELETE FROM heartbeats WHERE seen_at < ?1")?
        .execute([forget_before_ms])?;
    Ok(())
}

pub(super) fn remove(conn: &Connection, instance: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM heartbeats WHERE instance = ?1")?
        .execute([instance])?;
    Ok(())
}

/// Every heartbeat, the most recently seen first.
pub(super) fn list(conn: &Connection) -> Result<Vec<Heartbeat>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT instance, host, pid, started_at, seen_at FROM heartbeats \
         ORDER BY seen_at DESC, instance",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(Heartbeat {
            instance: row.get(0)?,
            host: row.get(1)?,
            pid: row.get(2)?,
            started_at: row.get(3)?,
            seen_at: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
