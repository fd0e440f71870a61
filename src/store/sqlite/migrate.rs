//! The schema: the migrations in `src/store/migrations/sqlite`, applied in order when the
//! store opens, by `rusqlite_migration`, which counts those applied in the database's
//! `user_version`.
//!
//! A store made before (by sqlx's migrator) counts them in its table `_sqlx_migrations`
//! instead, with `user_version` 0: its count is carried over once, after checking that every
//! migration it records is one of ours, unchanged (sqlx's SHA-384 checksum of the file) and
//! finished. The table is left as it was.

use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};
use sha2::{Digest, Sha384};

use crate::store::StoreError;

/// The migrations, oldest first; a migration once shipped never changes (a store made by
/// sqlx is checked against these texts).
const MIGRATIONS: [&str; 9] = [
    include_str!("../migrations/sqlite/0001_inbox.sql"),
    include_str!("../migrations/sqlite/0002_deliveries.sql"),
    include_str!("../migrations/sqlite/0003_per_source_keys.sql"),
    include_str!("../migrations/sqlite/0004_unpurged_index.sql"),
    include_str!("../migrations/sqlite/0005_needs_index.sql"),
    include_str!("../migrations/sqlite/0006_skip_kind.sql"),
    include_str!("../migrations/sqlite/0007_attempts_started_index.sql"),
    include_str!("../migrations/sqlite/0008_heartbeats.sql"),
    include_str!("../migrations/sqlite/0009_periodic_runs.sql"),
];

/// Applies the migrations the database has not had yet, in one transaction.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    carry_over_from_sqlx(conn)?;
    let migrations = Migrations::new(MIGRATIONS.iter().map(|sql| M::up(sql)).collect());
    migrations
        .to_latest(conn)
        .map_err(|error| StoreError::Open(format!("migration failed: {error}")))
}

/// Succeeds when every migration of this build is applied (`serve` with `store.migrate =
/// false`); else says how many are missing and how to apply them.
pub(super) fn require_migrated(conn: &Connection) -> Result<(), StoreError> {
    let counted: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let ours = MIGRATIONS.len() as i64;
    if counted >= ours {
        return Ok(());
    }
    Err(StoreError::Open(format!(
        "the store's schema lacks migration(s) {}..={ours}: run `storehook migrate`, or let \
         serve apply them (store.migrate = true)",
        counted + 1
    )))
}

/// The migrations that shape the rows `storehook copy-store` reads (0003 the keys, 0006 the
/// last column, the skip kinds); those after them add indexes and the heartbeats and periodic runs tables.
const SHAPE_THE_ROWS: i64 = 6;

/// Succeeds when `storehook copy-store` can read this store's rows as this build writes
/// them: it has every migration that shapes them, and none this build does not know.
pub(super) fn require_copyable(conn: &Connection) -> Result<(), StoreError> {
    let counted: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let ours = MIGRATIONS.len() as i64;
    if counted > ours {
        return Err(StoreError::Open(format!(
            "the store has migration(s) {}..={counted}, which this storehook does not know: \
             copy it with the storehook that made it",
            ours + 1
        )));
    }
    if counted < SHAPE_THE_ROWS {
        return Err(StoreError::Open(format!(
            "the store lacks migration(s) {}..={SHAPE_THE_ROWS} (it may not be a storehook \
             store): run `storehook migrate --store URL` on it first",
            counted + 1
        )));
    }
    Ok(())
}

/// Sets `user_version` to the number of migrations sqlx applied, for a store sqlx migrated.
fn carry_over_from_sqlx(conn: &Connection) -> Result<(), StoreError> {
    let counted: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let made_by_sqlx: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master \
         WHERE type = 'table' AND name = '_sqlx_migrations')",
        [],
        |row| row.get(0),
    )?;
    if counted != 0 || !made_by_sqlx {
        return Ok(());
    }
    let refuse = |why: String| {
        Err(StoreError::Open(format!(
            "cannot take over the migrations sqlx applied: {why}"
        )))
    };
    let mut statement =
        conn.prepare("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")?;
    let applied = statement
        .query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, bool>(1)?,
                row.get::<_, Vec<u8>>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (n, (version, success, checksum)) in applied.iter().enumerate() {
        let expected = MIGRATIONS
            .get(n)
            .map(|sql| Sha384::digest(sql.as_bytes()).to_vec());
        if *version != n as i64 + 1 || expected.is_none() {
            return refuse(format!("migration {version} is not one of ours"));
        }
        if !success {
            return refuse(format!(
                "migration {version} did not finish; repair the database first"
            ));
        }
        if expected.as_deref() != Some(checksum.as_slice()) {
            return refuse(format!("migration {version} was applied from another text"));
        }
    }
    conn.pragma_update(None, "user_version", applied.len() as i64)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rusqlite::{Connection, params};
    use sha2::{Digest, Sha384};

    use crate::store::{Accepted, NewDelivery, NewWebhook, SqliteStore, Store};

    /// The shipped migrations, by version and file name.
    const SHIPPED: [(i64, &str); 5] = [
        (1, "0001_inbox.sql"),
        (2, "0002_deliveries.sql"),
        (3, "0003_per_source_keys.sql"),
        (4, "0004_unpurged_index.sql"),
        (5, "0005_needs_index.sql"),
    ];

    fn shipped_sql(name: &str) -> String {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/migrations/sqlite");
        std::fs::read_to_string(dir.join(name)).unwrap()
    }

    /// A store as the sqlx-based storehook left it after its first `upto` migrations: the
    /// schema they make, and `_sqlx_migrations` as sqlx writes it (its table, each
    /// migration's description from its file name and its SHA-384 checksum).
    fn store_migrated_by_sqlx(path: &Path, upto: i64) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS _sqlx_migrations ( \
                 version BIGINT PRIMARY KEY, \
                 description TEXT NOT NULL, \
                 installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, \
                 success BOOLEAN NOT NULL, \
                 checksum BLOB NOT NULL, \
                 execution_time BIGINT NOT NULL)",
        )
        .unwrap();
        for (version, name) in SHIPPED.iter().filter(|(v, _)| *v <= upto) {
            let sql = shipped_sql(name);
            conn.execute_batch(&sql).unwrap();
            let description = name[5..name.len() - 4].replace('_', " ");
            conn.execute(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
                 execution_time) VALUES (?, ?, TRUE, ?, 1000)",
                params![
                    version,
                    description,
                    Sha384::digest(sql.as_bytes()).to_vec()
                ],
            )
            .unwrap();
        }
        conn
    }

    /// One translated webhook of source `s`, id 1, as every migration leaves the table.
    const WEBHOOK_A: &str = "INSERT INTO webhooks (id, source, platform, topic, dedupe_id, \
         headers, body, status, received_at) \
         VALUES (1, 's', 'haravan', 'orders/paid', 'a', '{}', x'7b7d', 'translated', 0)";

    /// A store written before delivery keys had their source (migrations 0001 and 0002):
    /// opening it gives every key and every `needs` key its webhook's source, so an order
    /// delivered before the upgrade is not delivered a second time after it: accepted
    /// again, the same order's Legion delivery is refused and only its Salekit one is new.
    #[tokio::test]
    async fn keys_stored_before_they_had_a_source_get_it_and_still_refuse_a_second_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("before.db");
        let conn = store_migrated_by_sqlx(&path, 2);
        conn.execute_batch(
            "INSERT INTO webhooks (id, source, platform, topic, dedupe_id, headers, body, status, \
               received_at) \
             VALUES (1, 'haravan', 'haravan', 'orders/paid', 'earlier', '{}', x'7b7d', \
               'translated', 0); \
             INSERT INTO deliveries (webhook_id, mapping, key, destination, operation, payload, \
               needs_mapping, needs_key, status, next_attempt_at, created_at, updated_at) VALUES \
             (1, 'haravan/legion-purchase', '1071234501', 'legion', 'legion.purchase_event', \
              '{}', NULL, NULL, 'delivered', 0, 0, 0), \
             (1, 'haravan/scalef-status', '1071234501/rejected', 'scalef', \
              'scalef.update_conversion_status', '{}', 'haravan/scalef-conversion', \
              '1071234501', 'skipped', 0, 0, 0)",
        )
        .unwrap();
        drop(conn);

        let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let conn = Connection::open(&path).unwrap();
        let keys: Vec<(String, String, Option<String>)> = conn
            .prepare("SELECT mapping, key, needs_key FROM deliveries ORDER BY id")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let stored = |mapping: &str, key: &str, needs: Option<&str>| {
            (
                mapping.to_string(),
                key.to_string(),
                needs.map(str::to_string),
            )
        };
        assert_eq!(
            keys,
            [
                stored("haravan/legion-purchase", "haravan/1071234501", None),
                stored(
                    "haravan/scalef-status",
                    "haravan/1071234501/rejected",
                    Some("haravan/1071234501")
                ),
            ]
        );

        // The same order again, in a webhook of its own: only its Salekit delivery is new.
        let delivery = |mapping: &str, destination: &str, operation: &str| NewDelivery {
            mapping: mapping.into(),
            key: "1071234501".into(),
            destination: destination.into(),
            operation: operation.into(),
            payload: "{}".into(),
            needs: None,
            skipped: None,
        };
        let again = NewWebhook {
            source: "haravan".into(),
            platform: "haravan".into(),
            topic: "orders/paid".into(),
            dedupe_id: "again".into(),
            headers: Default::default(),
            body: b"{}".to_vec(),
            received_at_ms: 1,
            deliveries: vec![
                delivery("haravan/legion-purchase", "legion", "legion.purchase_event"),
                delivery(
                    "haravan/salekit-audience",
                    "salekit",
                    "salekit.upsert_audience",
                ),
            ],
            translation_error: None,
        };
        let accepted = store.accept(again).await.unwrap();
        assert!(
            matches!(accepted, Accepted::Stored { deliveries: 1, .. }),
            "{accepted:?}"
        );
        let legion: i64 = conn
            .query_row(
                "SELECT count(*) FROM deliveries WHERE mapping = 'haravan/legion-purchase'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(legion, 1);
    }

    fn user_version(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap()
    }

    /// A store sqlx migrated to the last migration it knew (0005) opens with only the newer
    /// ones applied (0003 run twice would prefix every key a second time), keeps its rows,
    /// and takes writes.
    #[tokio::test]
    async fn a_store_sqlx_migrated_to_its_last_migration_opens_with_only_the_newer_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sqlx.db");
        let conn = store_migrated_by_sqlx(&path, 5);
        conn.execute_batch(WEBHOOK_A).unwrap();
        conn.execute_batch(
            "INSERT INTO deliveries (webhook_id, mapping, key, destination, operation, payload, \
               status, next_attempt_at, created_at, updated_at) VALUES \
             (1, 'm', 's/a', 'legion', 'legion.purchase_event', '{}', 'pending', 0, 0, 0)",
        )
        .unwrap();
        drop(conn);
        for _ in 0..2 {
            let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            assert_eq!(user_version(&path), super::MIGRATIONS.len() as i64);
            let listed = store.list_deliveries(&Default::default()).await.unwrap();
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].key, "s/a", "not prefixed again");
        }
        let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let mut again = crate::store::sqlite::accept::tests::webhook("s", "a");
        let accepted = store.accept(again.clone()).await.unwrap();
        assert!(
            matches!(accepted, Accepted::Duplicate { .. }),
            "{accepted:?}"
        );
        again.dedupe_id = "b".into();
        again.deliveries[0].key = "b".into();
        let accepted = store.accept(again).await.unwrap();
        assert!(
            matches!(accepted, Accepted::Stored { deliveries: 1, .. }),
            "{accepted:?}"
        );
    }

    #[tokio::test]
    async fn a_new_store_counts_every_migration_and_a_failed_or_foreign_sqlx_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new.db");
        SqliteStore::open(&format!("sqlite://{}", new.display()))
            .await
            .unwrap();
        assert_eq!(user_version(&new), super::MIGRATIONS.len() as i64);

        for (name, breakage, expected) in [
            (
                "failed.db",
                "UPDATE _sqlx_migrations SET success = FALSE WHERE version = 3",
                "migration 3 did not finish",
            ),
            (
                "changed.db",
                "UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 2",
                "migration 2 was applied from another text",
            ),
            (
                "foreign.db",
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
                 execution_time) VALUES (20240101, 'theirs', TRUE, x'00', 1)",
                "migration 20240101 is not one of ours",
            ),
        ] {
            let path = dir.path().join(name);
            store_migrated_by_sqlx(&path, 4)
                .execute_batch(breakage)
                .unwrap();
            let Err(error) = SqliteStore::open(&format!("sqlite://{}", path.display())).await
            else {
                panic!("{name} opened");
            };
            assert!(error.to_string().contains(expected), "{name}: {error}");
            assert_eq!(user_version(&path), 0, "{name}: nothing carried over");
        }
    }

    /// Skips stored before their kind was (0006): a superseded one is `superseded`, every
    /// other one `unmet_need`, and a delivery not skipped has no kind.
    #[tokio::test]
    async fn skips_stored_before_their_kind_get_it_from_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kinds.db");
        let conn = store_migrated_by_sqlx(&path, 5);
        conn.execute_batch(WEBHOOK_A).unwrap();
        conn.execute_batch(
            "INSERT INTO deliveries (webhook_id, mapping, key, destination, operation, payload, \
               status, last_error, next_attempt_at, created_at, updated_at) VALUES \
             (1, 'm', 's/1', 'scalef', 'scalef.update_conversion_status', '{}', 'skipped', \
               'superseded: a later delivery of this mapping for the same c was delivered', \
               0, 0, 0), \
             (1, 'm', 's/2', 'scalef', 'scalef.update_conversion_status', '{}', 'skipped', \
               'nothing to update: the delivery it needs never appeared', 0, 0, 0), \
             (1, 'm', 's/3', 'scalef', 'scalef.update_conversion_status', '{}', 'dead', \
               'superseded: not a skip', 0, 0, 0)",
        )
        .unwrap();
        drop(conn);
        let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let listed = store.list_deliveries(&Default::default()).await.unwrap();
        let kinds: Vec<_> = listed.iter().rev().map(|d| d.skip).collect();
        use crate::domain::SkipKind::{Superseded, UnmetNeed};
        assert_eq!(kinds, [Some(Superseded), Some(UnmetNeed), None]);
    }
}
