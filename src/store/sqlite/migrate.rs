//! The schema: the migrations in `src/store/migrations/sqlite`, applied in order when the
//! store opens.

use sqlx::SqlitePool;

use crate::store::StoreError;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/sqlite");

/// Applies the migrations the database has not had yet.
pub(super) async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    MIGRATIONS.run(pool).await?;
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

    /// A store written before delivery keys had their source (migrations 0001 and 0002):
    /// opening it gives every key and every `needs` key its webhook's source, so an order
    /// delivered before the upgrade is not delivered a second time after it. (Moved here
    /// from the integration tests, where it posted the same order over HTTP: only its
    /// Salekit delivery was new; here the same two deliveries are accepted directly.)
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
}
