//! PostgreSQL for the tests: a fresh schema of the database `DATABASE_URL` names, dropped
//! when its guard is. Without `DATABASE_URL` the PostgreSQL tests are skipped with a line
//! saying why, except under CI (`CI=true`), where a missing or unreachable PostgreSQL fails
//! them: CI must run them.

use std::io::Write as _;
use std::sync::Once;

// The schema's name is made here, never outside input.
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

/// A schema of its own in the test database, dropped (with everything in it) on drop.
pub struct PgSchema {
    /// The database's URL, as `DATABASE_URL` gives it.
    database_url: String,
    pub name: String,
}

impl PgSchema {
    /// A store URL whose connections work in this schema.
    pub fn store_url(&self) -> String {
        let separator = if self.database_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{separator}options=-csearch_path%3D{}",
            self.database_url, self.name
        )
    }
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci == "true")
}

/// Says, once per test binary on the terminal and once per test in its output, why the
/// PostgreSQL half is not run.
fn skip(test: &str) {
    const WHY: &str = "DATABASE_URL is not set; the PostgreSQL half of the tests is not run";
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Past the test harness's capture: a plain `cargo test` shows it.
        let _ = writeln!(std::io::stderr(), "note: {WHY}");
    });
    eprintln!("skipped {test}: {WHY}");
}

/// A fresh schema in the database `DATABASE_URL` names, or `None` (the test is skipped)
/// when it is not set outside CI. A set URL that cannot be reached fails the test.
pub async fn fresh_schema(test: &str) -> Option<PgSchema> {
    let database_url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ if under_ci() => panic!(
            "CI=true but DATABASE_URL is not set: CI runs the PostgreSQL tests (.ci/run sets it)"
        ),
        _ => {
            skip(test);
            return None;
        }
    };
    let name = format!("storehook_test_{:016x}", fastrand::u64(..));
    let mut conn = PgConnection::connect(&database_url)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "DATABASE_URL is set but PostgreSQL cannot be reached ({}): {error}",
                storehook::store::redacted_url(&database_url)
            )
        });
    conn.execute(AssertSqlSafe(format!("CREATE SCHEMA {name}")))
        .await
        .unwrap();
    conn.close().await.unwrap();
    Some(PgSchema { database_url, name })
}

impl Drop for PgSchema {
    /// Drops the schema on a thread and runtime of its own (the test's runtime may be
    /// shutting down); a failure is said, never a panic.
    fn drop(&mut self) {
        let url = self.database_url.clone();
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&url)
                    .await
                    .map_err(|error| error.to_string())?;
                conn.execute(AssertSqlSafe(sql))
                    .await
                    .map_err(|error| error.to_string())?;
                conn.close().await.map_err(|error| error.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("cannot drop test schema {}: {error}", self.name),
            Err(_) => eprintln!("cannot drop test schema {}: the thread panicked", self.name),
        }
    }
}
