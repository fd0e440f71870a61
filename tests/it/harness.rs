//! `spawn_app()`: the real App on 127.0.0.1:0 with the shipped `storehook.toml`, a SQLite
//! file in a temporary directory, and test secrets in place of the environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::sync::Arc;

use storehook::app::App;
use storehook::config::{Config, EMBEDDED};
use storehook::delivery::Worker;
use storehook::fixture::Fixture;
// Re-exported: the tests name these when they check state through the store.
pub use storehook::store::{
    DeliveryFilter, DeliveryId, DeliveryStatus, Store, WebhookFilter, WebhookId,
};
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
        "shop-ir" => "shop-ir-secret-for-tests",
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
    for source in PLATFORMS.into_iter().chain(["shop-ir"]) {
        env.insert(
            format!("{}_WEBHOOK_SECRET", source.to_uppercase().replace('-', "_")),
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
    /// `http://ADDRESS` of the admin surface when `[admin] listen` gives it its own.
    pub admin_address: Option<String>,
    pub db_path: PathBuf,
    /// The running app's own store: tests check state through it, not through SQL.
    pub store: Arc<dyn Store>,
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
    let admin_address = app.admin_addr().map(|a| format!("http://{a}"));
    let store = app.store();
    let (tx, rx) = oneshot::channel::<()>();
    let running = tokio::spawn(app.run(async {
        let _ = rx.await;
    }));
    let app = TestApp {
        address,
        admin_address,
        db_path: dir.path().join("storehook.db"),
        store,
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
    pub webhook_id: i64,
    pub mapping: String,
    pub key: String,
    pub status: String,
    pub payload: serde_json::Value,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub conversion_id: Option<String>,
    pub request: Option<String>,
    /// While in flight: when the lease ends.
    pub lease_until: Option<i64>,
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
        self.post_raw(
            source,
            &signed_headers(fixture, body, secret),
            body.to_vec(),
        )
        .await
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

    /// Every stored webhook, oldest first.
    pub async fn inbox(&self) -> Vec<StoredWebhook> {
        let mut webhooks = self
            .store
            .list_webhooks(&WebhookFilter::default())
            .await
            .unwrap();
        webhooks.reverse();
        webhooks
            .into_iter()
            .map(|w| StoredWebhook {
                id: w.id.0,
                source: w.source,
                platform: w.platform.as_str().to_string(),
                topic: w.topic,
                dedupe_id: w.dedupe_id,
                headers: serde_json::to_value(w.headers).unwrap(),
                body: w.body,
            })
            .collect()
    }

    /// Every delivery: (webhook id, mapping, key, status, payload), oldest first.
    pub async fn deliveries(&self) -> Vec<(i64, String, String, String, serde_json::Value)> {
        self.delivery_rows()
            .await
            .into_iter()
            .map(|row| {
                (
                    row.webhook_id,
                    row.mapping,
                    row.key,
                    row.status,
                    row.payload,
                )
            })
            .collect()
    }

    /// Every delivery with its delivery state, oldest first.
    pub async fn delivery_rows(&self) -> Vec<DeliveryRow> {
        let summaries = self
            .store
            .list_deliveries(&DeliveryFilter::default())
            .await
            .unwrap();
        let mut rows = Vec::with_capacity(summaries.len());
        for summary in summaries.iter().rev() {
            let record = self
                .store
                .get_delivery(summary.id)
                .await
                .unwrap()
                .expect("a listed delivery stays");
            rows.push(DeliveryRow {
                id: record.summary.id.0,
                webhook_id: record.summary.webhook_id.0,
                mapping: record.summary.mapping,
                key: record.summary.key,
                status: record.summary.status.as_str().to_string(),
                payload: serde_json::from_str(&record.payload).unwrap(),
                attempts: record.summary.attempts,
                last_error: record.summary.last_error,
                conversion_id: record.conversion_id,
                request: record.request,
                lease_until: record.lease_until,
            });
        }
        rows
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
        self.store
            .list_attempts(DeliveryId(delivery_id))
            .await
            .unwrap()
            .into_iter()
            .map(|a| {
                (
                    a.outcome.as_str().to_string(),
                    a.http_status.map(i64::from),
                    a.response,
                )
            })
            .collect()
    }

    /// (status, error) of a stored webhook.
    pub async fn webhook_status(&self, id: i64) -> (String, Option<String>) {
        let webhooks = self
            .store
            .list_webhooks(&WebhookFilter::default())
            .await
            .unwrap();
        let webhook = webhooks
            .into_iter()
            .find(|w| w.id == WebhookId(id))
            .unwrap_or_else(|| panic!("no webhook {id} is stored"));
        (webhook.status.as_str().to_string(), webhook.error)
    }

    /// Fault injection into this app's SQLite file (see [`SqliteFaults`]).
    pub fn sqlite_faults(&self) -> SqliteFaults {
        SqliteFaults::open(&self.db_path)
    }
}

/// SQLite only: a connection of its own to an app's database file that makes the store
/// fail as a full disk or a broken file would. The one place tests write SQL to the
/// store's file, and only to break it, never to read state.
pub struct SqliteFaults {
    conn: rusqlite::Connection,
}

impl SqliteFaults {
    pub fn open(db_path: &Path) -> Self {
        let conn = rusqlite::Connection::open(db_path).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        SqliteFaults { conn }
    }

    /// Makes the store refuse every insert into `table` until [`SqliteFaults::allow_inserts`].
    /// `table` is a name the test writes, never outside input.
    pub fn refuse_inserts(&self, table: &str) {
        self.conn
            .execute_batch(&format!(
                "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} \
                 BEGIN SELECT RAISE(ABORT, 'inserts into {table} refused by the test'); END"
            ))
            .unwrap();
    }

    /// Ends [`SqliteFaults::refuse_inserts`] on `table`.
    pub fn allow_inserts(&self, table: &str) {
        self.conn
            .execute_batch(&format!("DROP TRIGGER refuse_{table}"))
            .unwrap();
    }
}

/// A port free on 127.0.0.1 a moment ago, for a server the test starts as a process.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

/// `fixture`'s recorded headers, with the platform's signature of `body` under `secret`.
pub fn signed_headers(fixture: &Fixture, body: &[u8], secret: &str) -> Vec<(String, String)> {
    let mut headers = recorded_headers_without_signature(fixture);
    headers.push((
        signature_header(platform_of(fixture)).to_string(),
        platform_signature(secret, body),
    ));
    headers
}

/// Sets header `name` (any case) to `value`, or removes it when `value` is `None`.
pub fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: Option<&str>) {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    if let Some(value) = value {
        headers.push((name.to_string(), value.to_string()));
    }
}

/// Polls `holds` until it is true (bounded: 30 s, then panics naming `what`).
pub async fn wait_until(what: &str, holds: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !holds() {
        assert!(std::time::Instant::now() < deadline, "never came: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

pub async fn json_of(response: reqwest::Response) -> serde_json::Value {
    response.json().await.expect("a JSON body")
}

/// A `storehook` process a test started: used as its [`std::process::Child`], and killed
/// (SIGKILL) and reaped when dropped, so that a test that fails leaves no server running.
pub struct Process(pub std::process::Child);

impl std::ops::Deref for Process {
    type Target = std::process::Child;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Process {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
