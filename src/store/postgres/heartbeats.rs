//! The heartbeats of the `serve` instances running on this schema (see
//! [`crate::store::heartbeat`]): one row per instance, by its id.

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::store::Heartbeat;

/// Writes `heartbeat` (its `seen_at` refreshed when its row is there) and removes the rows
/// last seen before `forget_before_ms`.
pub(super) async fn record(
    conn: &mut PgConnection,
    heartbeat: &Heartbeat,
    forget_before_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO heartbeats (instance, host, pid, started_at, seen_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (instance) DO UPDATE SET seen_at = EXCLUDED.seen_at",
    )
    .bind(&heartbeat.instance)
    .bind(&heartbeat.host)
    .bind(heartbeat.pid)
    .bind(heartbeat.started_at)
    .bind(heartbeat.seen_at)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM heartbeats WHERE seen_at < $1")
        .bind(forget_before_ms)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(super) async fn remove(conn: &mut PgConnection, instance: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM heartbeats WHERE instance = $1")
        .bind(instance)
        .execute(conn)
        .await?;
    Ok(())
}

/// Every heartbeat, the most recently seen first.
pub(super) async fn list(conn: &mut PgConnection) -> Result<Vec<Heartbeat>, sqlx::Error> {
    sqlx::query(
        "SELECT instance, host, pid, started_at, seen_at FROM heartbeats \
         ORDER BY seen_at DESC, instance",
    )
    .fetch_all(conn)
    .await?
    .iter()
    .map(heartbeat)
    .collect()
}

fn heartbeat(row: &PgRow) -> Result<Heartbeat, sqlx::Error> {
    Ok(Heartbeat {
        instance: row.try_get("instance")?,
        host: row.try_get("host")?,
        pid: row.try_get("pid")?,
        started_at: row.try_get("started_at")?,
        seen_at: row.try_get("seen_at")?,
    })
}
