//! The schema: the migrations in `src/store/migrations/postgres`, carried in the binary and
//! applied in order by sqlx's migrator, which counts them in the table
//! [`MIGRATIONS_TABLE`] of the store's schema and holds an advisory lock while it runs, so
//! that instances starting together apply each migration once.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{PgConnection, PgPool, Row, SqlSafeStr};

use crate::store::StoreError;

/// The migrations, oldest first: (version, description, SQL). A migration once shipped
/// never changes (the migrator refuses a store whose recorded checksum differs).
const MIGRATIONS: [(i64, &str, &str); 4] = [
    (
        1,
        "schema",
        include_str!("../migrations/postgres/0001_schema.sql"),
    ),
    (
        2,
        "cancel and listings",
        include_str!("../migrations/postgres/0002_cancel_and_listings.sql"),
    ),
    (
        3,
        "heartbeats",
        include_str!("../migrations/postgres/0003_heartbeats.sql"),
    ),
    (
        4,
        "periodic runs",
        include_str!("../migrations/postgres/0004_periodic_runs.sql"),
    ),
];

/// Where the applied migrations are counted: a name of storehook's own, so that a schema
/// shared with another application that uses sqlx keeps its own count.
const MIGRATIONS_TABLE: &str = "storehook_migrations";

fn migrator() -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|&(version, description, sql)| {
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect();
    let mut migrator = Migrator::with_migrations(migrations);
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

/// Applies the migrations the store's schema lacks.
pub(super) async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    migrator()
        .run(pool)
        .await
        .map_err(|error| StoreError::Open(format!("cannot migrate the store's schema: {error}")))
}

/// The migrations that shape the rows `storehook copy-store` reads (the first makes every
/// table as it is); those after it add an index, a function, and the heartbeats and periodic runs tables.
const SHAPE_THE_ROWS: i64 = 1;

/// Succeeds when `storehook copy-store` can read this schema's rows as this build writes
/// them: it has every migration that shapes them, and none this build does not know.
pub(super) async fn require_copyable(conn: &mut PgConnection) -> Result<(), StoreError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(MIGRATIONS_TABLE)
        .fetch_one(&mut *conn)
        .await?;
    let applied: Vec<(i64, bool)> = if exists {
        // [`MIGRATIONS_TABLE`], which `to_regclass` found.
        sqlx::query_as("SELECT version, success FROM storehook_migrations")
            .fetch_all(&mut *conn)
            .await?
    } else {
        Vec::new()
    };
    let ours = MIGRATIONS.len() as i64;
    if let Some(unknown) = applied
        .iter()
        .map(|&(version, _)| version)
        .find(|&v| v > ours)
    {
        return Err(StoreError::Open(format!(
            "the store's schema has migration {unknown}, which this storehook does not know: \
             copy it with the storehook that made it"
        )));
    }
    let missing: Vec<String> = (1..=SHAPE_THE_ROWS)
        .filter(|version| !applied.contains(&(*version, true)))
        .map(|version| version.to_string())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(StoreError::Open(format!(
        "the store's schema lacks migration(s) {} (it may not be a storehook store, or the \
         URL may name another schema): run `storehook migrate --store URL` on it first",
        missing.join(", ")
    )))
}

/// Succeeds when every migration of this build is applied (`serve` with `store.migrate =
/// false`); else names what is missing and how to apply it.
pub(super) async fn require_migrated(pool: &PgPool) -> Result<(), StoreError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(MIGRATIONS_TABLE)
        .fetch_one(pool)
        .await?;
    let applied: Vec<(i64, Vec<u8>, bool)> = if exists {
        // [`MIGRATIONS_TABLE`], which `to_regclass` found.
        sqlx::query("SELECT version, checksum, success FROM storehook_migrations")
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
            .collect::<Result<_, sqlx::Error>>()?
    } else {
        Vec::new()
    };
    let migrator = migrator();
    let missing: Vec<String> = migrator
        .iter()
        .filter(|ours| {
            !applied.iter().any(|(version, checksum, success)| {
                *version == ours.version && *success && **checksum == *ours.checksum
            })
        })
        .map(|ours| format!("{} ({})", ours.version, ours.description))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(StoreError::Open(format!(
        "the store's schema lacks migration(s) {}: run `storehook migrate`, or let serve \
         apply them (store.migrate = true)",
        missing.join(", ")
    )))
}
