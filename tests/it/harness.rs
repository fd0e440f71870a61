//! `spawn_app()`: the real App on 127.0.0.1:0 with the shipped `storehook.toml`, a SQLite
//! file in a temporary directory, and test secrets in place of the environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use storehook::app::App;
use storehook::config::{Config, EMBEDDED};
use storehook::delivery::Worker;
use storehook::fixture::Fixture;
use tempfile::TempDir;
use tokio::sync::oneshot;

pub const PLATFORMS: [&str; 3] = ["haravan", "woocommerce", "shopify"];
pub const FIXTURE_SECRET: &str = "storehook-fixture-secret";
pub const VERIFY_TOKEN: &str = "verify-token-for-tests";

/// The secret each shipped source is configured with in tests.
pub fn secret_of(source: &str) -> &'static str {
    match source {
        "haravan" => "haravan-secret-for-tests",
        "woocommerce" => "woocommerce-secret-for-tests",
        "shopify" => "shopify-secret-for-tests",
        other => panic!("no test secret for {other}"),
    }
}

/// The signature header each platform writes.
pub fn signature_header(platform: &str) -> &'static str {
    match platform {
        "haravan" => "X-Haravan-Hmacsha256",
        "woocommerce" => "X-WC-Webhook-Signature",
        "shopify" => "X-Shopify-Hmac-Sha256",
        other => panic!("unknown platform {other}"),
    }
}

/// Computed here with the HMAC crates directly, the way each platform computes it, so the
/// tests do not lean on the signing code under test.
pub fn platform_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The environment the shipped configuration reads, as a test sets it.
pub fn test_env(dir: &Path) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for source in PLATFORMS {
        env.insert(
            format!("{}_WEBHOOK_SECRET", source.to_uppercase()),
            secret_of(source).to_string(),
        );
    }
    env.insert("HARAVAN_VERIFY_TOKEN".into(), VERIFY_TOKEN.into());
    env.insert(
        "STOREHOOK_MAPPINGS_DIR".into(),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("mappings")
            .display()
            .to_string(),
    );
    env.insert(
        "STOREHOOK_STORE_URL".into(),
        format!("sqlite://{}", dir.join("storehook.db").display()),
    );
    env
}

pub struct TestApp {
    pub address: String,
    pub db_path: PathBuf,
    pub client: reqwest::Client,
    /// Holds the temporary directory (and the database in it) for as long as the app runs.
    pub _dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    running: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns the app after `adjust` has changed the test environment (remove a secret, add a
/// previous one, …).
pub async fn spawn_app_with(adjust: impl FnOnce(&mut BTreeMap<String, String>)) -> TestApp {
    spawn_app_configured(adjust, |_| {}).await
}

/// Spawns the app after `adjust_env` changed the environment and `adjust_config` the parsed
/// configuration (short retry schedules, …).
pub async fn spawn_app_configured(
    adjust_env: impl FnOnce(&mut BTreeMap<String, String>),
    adjust_config: impl FnOnce(&mut Config),
) -> TestApp {
    spawn_app_stepping(adjust_env, adjust_config, &[]).await.0
}

/// [`spawn_app_configured`], with the delivery workers of `destinations` (in that order)
/// taken out of the app before it runs: the test drives them with [`Worker::step`], and
/// nothing else sends to those destinations.
pub async fn spawn_app_stepping(
    adjust_env: impl FnOnce(&mut BTreeMap<String, String>),
    adjust_config: impl FnOnce(&mut Config),
    destinations: &[&str],
) -> (TestApp, Vec<Worker>) {
    let dir = tempfile::tempdir().unwrap();
    let mut env = test_env(dir.path());
    adjust_env(&mut env);
    let mut config = Config::parse(EMBEDDED, "storehook.toml", &|name| env.get(name).cloned())
        .expect("the shipped configuration loads");
    config.listen = "127.0.0.1:0".parse().unwrap();
    adjust_config(&mut config);
    let mut app = App::build(config).await.expect("the app builds");
    let workers = destinations
        .iter()
        .map(|id| app.take_worker(id).expect("a configured destination"))
        .collect();
    let address = format!("http://{}", app.local_addr());
    let (tx, rx) = oneshot::channel::<()>();
    let running = tokio::spawn(app.run(async {
        let _ = rx.await;
    }));
    let app = TestApp {
        address,
        db_path: dir.path().join("storehook.db"),
        client: reqwest::Client::new(),
        _dir: dir,
        shutdown: Some(tx),
        running: Some(running),
    };
    (app, workers)
}

#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub id: i64,
    pub mapping: String,
    pub key: String,
    pub status: String,
    pub payload: serde_json::Value,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub conversion_id: Option<String>,
    pub request: Option<String>,
}

#[derive(Debug)]
pub struct StoredWebhook {
    pub id: i64,
    pub source: String,
    pub platform: String,
    pub topic: String,
    pub dedupe_id: String,
    pub headers: serde_json::Value,
    pub body: Vec<u8>,
}

impl TestApp {
    /// Runs the `storehook` binary on this app's store with `mappings`, and nothing else
    /// from the environment.
    pub fn cli(&self, mappings: &Path, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_storehook"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_clear()
            .env(
                "STOREHOOK_STORE_URL",
                format!("sqlite://{}", self.db_path.display()),
            )
            .env("STOREHOOK_MAPPINGS_DIR", mappings)
            .args(args)
            .output()
            .unwrap()
    }

    /// Posts `count` distinct paid Haravan orders, ids from `first_id` on; each answered 200.
    pub async fn post_paid_haravan_orders(&self, first_id: u64, count: u64) {
        let fixture = fixture("haravan", "paid-two-items-discount");
        let order: serde_json::Value = serde_json::from_slice(&fixture.body).unwrap();
        for id in first_id..first_id + count {
            let mut order = order.clone();
            order["id"] = id.into();
            let body = serde_json::to_vec(&order).unwrap();
            let response = self
                .post_signed("haravan", &fixture, &body, secret_of("haravan"))
                .await;
            assert_eq!(response.status(), 200);
        }
    }

    /// Shuts the app down as SIGTERM would and waits until it has stopped.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(running) = self.running.take() {
            running.await.unwrap().unwrap();
        }
    }

    pub fn webhook_url(&self, source: &str) -> String {
        format!("{}/webhooks/{source}", self.address)
    }

    /// Posts a fixture as its platform would: the recorded headers, signed with `secret`.
    pub async fn post_fixture(
        &self,
        source: &str,
        fixture: &Fixture,
        secret: &str,
    ) -> reqwest::Response {
        self.post_signed(source, fixture, &fixture.body, secret)
            .await
    }

    /// Posts `body` with `fixture`'s recorded headers, signed with `secret`.
    pub async fn post_signed(
        &self,
        source: &str,
        fixture: &Fixture,
        body: &[u8],
        secret: &str,
    ) -> reqwest::Response {
        let platform = platform_of(fixture);
        let mut headers = recorded_headers_without_signature(fixture);
        headers.push((
            signature_header(platform).to_string(),
            platform_signature(secret, body),
        ));
        self.post_raw(source, &headers, body.to_vec()).await
    }

    pub async fn post_raw(
        &self,
        source: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut request = self.client.post(self.webhook_url(source)).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send().await.expect("the server answers")
    }

    /// Every stored webhook, read straight from the SQLite file.
    pub async fn inbox(&self) -> Vec<StoredWebhook> {
        let pool = self.db().await;
        let rows = sqlx::query(
            "SELECT id, source, platform, topic, dedupe_id, headers, body FROM webhooks ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows.into_iter()
            .map(|row| StoredWebhook {
                id: row.get("id"),
                source: row.get("source"),
                platform: row.get("platform"),
                topic: row.get("topic"),
                dedupe_id: row.get("dedupe_id"),
                headers: serde_json::from_str(row.get::<&str, _>("headers")).unwrap(),
                body: row.get("body"),
            })
            .collect()
    }

    /// Every delivery row: (webhook id, mapping, key, status, payload).
    pub async fn deliveries(&self) -> Vec<(i64, String, String, String, serde_json::Value)> {
        let pool = self.db().await;
        let rows = sqlx::query(
            "SELECT webhook_id, mapping, key, status, payload FROM deliveries ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows.into_iter()
            .map(|row| {
                (
                    row.get("webhook_id"),
                    row.get("mapping"),
                    row.get("key"),
                    row.get("status"),
                    serde_json::from_str(row.get::<&str, _>("payload")).unwrap(),
                )
            })
            .collect()
    }

    /// Every delivery row with its delivery state.
    pub async fn delivery_rows(&self) -> Vec<DeliveryRow> {
        let pool = self.db().await;
        let rows = sqlx::query(
            "SELECT id, mapping, key, status, payload, attempts, last_error, conversion_id, request \
             FROM deliveries ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows.into_iter()
            .map(|row| DeliveryRow {
                id: row.get("id"),
                mapping: row.get("mapping"),
                key: row.get("key"),
                status: row.get("status"),
                payload: serde_json::from_str(row.get::<&str, _>("payload")).unwrap(),
                attempts: row.get("attempts"),
                last_error: row.get("last_error"),
                conversion_id: row.get("conversion_id"),
                request: row.get("request"),
            })
            .collect()
    }

    /// Polls the deliveries until `done` holds for them (bounded: 30 s, then panics with
    /// what they were).
    pub async fn wait_for_deliveries(
        &self,
        done: impl Fn(&[DeliveryRow]) -> bool,
    ) -> Vec<DeliveryRow> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let rows = self.delivery_rows().await;
            if done(&rows) {
                return rows;
            }
            if std::time::Instant::now() > deadline {
                panic!("deliveries did not reach the expected state: {rows:#?}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Polls until the delivery of `mapping` has `status`; returns all deliveries then.
    pub async fn wait_for_status(&self, mapping: &str, status: &str) -> Vec<DeliveryRow> {
        self.wait_for_deliveries(|rows| {
            rows.iter()
                .any(|r| r.mapping == mapping && r.status == status)
        })
        .await
    }

    /// (outcome, HTTP status, response) of each attempt of a delivery, oldest first.
    pub async fn attempts_of(
        &self,
        delivery_id: i64,
    ) -> Vec<(String, Option<i64>, Option<String>)> {
        let pool = self.db().await;
        let rows = sqlx::query(
            "SELECT outcome, http_status, response FROM attempts WHERE delivery_id = ? ORDER BY id",
        )
        .bind(delivery_id)
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows.into_iter()
            .map(|r| (r.get("outcome"), r.get("http_status"), r.get("response")))
            .collect()
    }

    /// (status, error) of a stored webhook.
    pub async fn webhook_status(&self, id: i64) -> (String, Option<String>) {
        let pool = self.db().await;
        let row = sqlx::query("SELECT status, error FROM webhooks WHERE id = ?")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        (row.get("status"), row.get("error"))
    }

    /// A separate connection to the app's database file.
    pub async fn db(&self) -> SqlitePool {
        SqlitePool::connect_with(SqliteConnectOptions::new().filename(&self.db_path))
            .await
            .unwrap()
    }
}

/// Makes the store refuse every insert into `table`, as a full disk or a broken file would,
/// until [`allow_inserts`]. `table` is a name the test writes, never outside input.
pub async fn refuse_inserts(pool: &SqlitePool, table: &str) {
    let trigger = format!(
        "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} \
         BEGIN SELECT RAISE(ABORT, 'inserts into {table} refused by the test'); END"
    );
    sqlx::query(sqlx::AssertSqlSafe(trigger))
        .execute(pool)
        .await
        .unwrap();
}

/// Ends [`refuse_inserts`] on `table`.
pub async fn allow_inserts(pool: &SqlitePool, table: &str) {
    let drop = format!("DROP TRIGGER refuse_{table}");
    sqlx::query(sqlx::AssertSqlSafe(drop))
        .execute(pool)
        .await
        .unwrap();
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Every recorded webhook of a platform, in name order.
pub fn fixtures(platform: &str) -> Vec<Fixture> {
    let mut paths: Vec<_> = std::fs::read_dir(fixtures_dir().join(platform))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 4, "{platform} has at least four fixtures");
    paths.iter().map(|p| Fixture::load(p).unwrap()).collect()
}

pub fn fixture(platform: &str, name: &str) -> Fixture {
    Fixture::load(&fixtures_dir().join(platform).join(format!("{name}.json"))).unwrap()
}

pub fn platform_of(fixture: &Fixture) -> &'static str {
    let dir = fixture.path.parent().unwrap().file_name().unwrap();
    PLATFORMS
        .into_iter()
        .find(|p| dir == *p)
        .expect("fixtures sit in a platform directory")
}

pub fn recorded_headers_without_signature(fixture: &Fixture) -> Vec<(String, String)> {
    let platform = platform_of(fixture);
    fixture
        .headers
        .iter()
        .filter(|(name, _)| {
            !name.eq_ignore_ascii_case(signature_header(platform))
                && !name.eq_ignore_ascii_case("X-Haravan-Hmac-Sha256")
        })
        .cloned()
        .collect()
}

pub async fn json_of(response: reqwest::Response) -> serde_json::Value {
    response.json().await.expect("a JSON body")
}
