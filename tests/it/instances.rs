//! Three `storehook serve` processes on one PostgreSQL schema, webhooks spread over all
//! three under load, one killed with SIGKILL mid-run: every acknowledged webhook's Legion
//! event arrives, a repeat only ever with the same event id; a Scalef create → approve →
//! reject sequence sent to three instances arrives in order, a repeated request with the
//! same `Idempotency-Key`. A mappings reload asked of one instance (admin API, dashboard)
//! reaches the others. Runs where `DATABASE_URL` names a PostgreSQL (always under CI).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use storehook::store::{Announcement, DeliveryFilter, DeliveryStatus};

use crate::crash::{order, start_with_env, wait_healthy};
use crate::dashboard::FormFields as _;
use crate::doubles::{Double, Received};
use crate::harness::*;

const ORDERS: u64 = 240;

fn scalef_answer(request: &Received) -> crate::doubles::Answer {
    if request.path.ends_with("/conversion") {
        let body =
            json!({"status": "success", "data": {"conversion": {"conversion_id": "conv-1"}}});
        (200, vec![], body.to_string())
    } else {
        (200, vec![], r#"{"status": "success"}"#.into())
    }
}

/// The Haravan order with a click id as `topic`, changed by `change`, signed.
fn scalef_event(
    topic: &str,
    updated_at: &str,
    change: impl FnOnce(&mut Value),
) -> (Vec<(String, String)>, Vec<u8>) {
    let fixture = fixture("haravan", "local-phone-click-id");
    let mut order: Value = serde_json::from_slice(&fixture.body).unwrap();
    order["updated_at"] = updated_at.into();
    change(&mut order);
    let body = serde_json::to_vec(&order).unwrap();
    let mut headers = signed_headers(&fixture, &body, secret_of("haravan"));
    set_header(&mut headers, "X-Haravan-Topic", Some(topic));
    (headers, body)
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    (headers, body): (Vec<(String, String)>, Vec<u8>),
) -> Option<Value> {
    let mut request = client.post(format!("{base}/webhooks/haravan")).body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.ok()?;
    if response.status() != 200 {
        return None;
    }
    response.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_postgresql_one_killed_lose_nothing_and_keep_scalef_in_order() {
    let Some(schema) = crate::postgres::fresh_schema("three instances on PostgreSQL").await else {
        return;
    };
    let store_url = schema.store_url();
    let (legion, legion_url) = Double::start().await;
    let (scalef, scalef_url) = Double::start_with(scalef_answer).await;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("SCALEF_BASE_URL", scalef_url.as_str()),
        ("SCALEF_USER", "scalef-user"),
        ("SCALEF_ACCESS_TOKEN", "scalef-token"),
    ];
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let bases: Vec<String> = ports
        .iter()
        .map(|port| format!("http://127.0.0.1:{port}"))
        .collect();
    // Started together: their migrators take turns.
    let mut children: Vec<_> = ports
        .iter()
        .map(|port| start_with_env(dir.path(), *port, &store_url, &legion_url, &env))
        .collect();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for base in &bases {
        wait_healthy(&client, base).await;
    }

    // The Scalef sequence, one step per instance, each sent once the one before is
    // acknowledged (as a shop sends them).
    let create = scalef_event("orders/paid", "2024-05-01T10:00:00Z", |_| {});
    let approve = scalef_event("orders/fulfilled", "2024-05-02T10:00:00Z", |order| {
        order["fulfillment_status"] = "fulfilled".into();
    });
    let reject = scalef_event("orders/cancelled", "2024-05-03T10:00:00Z", |order| {
        order["cancelled_at"] = "2024-05-03T10:00:00Z".into();
        order["cancel_reason"] = "customer".into();
    });
    for (step, base) in [create, approve, reject].into_iter().zip(&bases) {
        let answer = post(&client, base, step).await.expect("answered 200");
        assert_eq!(answer["duplicate"], false, "{answer}");
    }

    // Orders spread over the three; the second instance is killed a third of the way in.
    let answered = std::sync::atomic::AtomicU64::new(0);
    let mut killed = false;
    let results: Vec<(u64, bool)> = futures::stream::iter(0..ORDERS)
        .map(|n| {
            let (client, base) = (client.clone(), bases[(n % 3) as usize].clone());
            let answered = &answered;
            async move {
                let ok = post(&client, &base, order(n)).await.is_some();
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                (n, ok)
            }
        })
        .buffer_unordered(24)
        .inspect(|_| {
            if !killed && answered.load(std::sync::atomic::Ordering::SeqCst) >= ORDERS / 3 {
                children[1].kill().unwrap(); // SIGKILL: no shutdown, leases left behind
                killed = true;
            }
        })
        .collect()
        .await;
    assert!(killed);
    children[1].wait().unwrap();
    // The shop retries what was not answered, at an instance that is up.
    let mut acked = BTreeSet::new();
    for (n, ok) in results {
        if !ok {
            assert!(post(&client, &bases[2], order(n)).await.is_some());
        }
        acked.insert(n);
    }

    // Every order's Legion event arrives (the killed instance's leases expire and the others
    // claim its deliveries), and an order seen twice is seen with the same event id.
    let deadline = Instant::now() + Duration::from_secs(90);
    let events = loop {
        let mut by_order: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for request in legion.received() {
            for event in request.body.as_array().unwrap() {
                by_order
                    .entry(event["payload"]["order_id"].as_str().unwrap().to_string())
                    .or_default()
                    .insert(event["id"].as_str().unwrap().to_string());
            }
        }
        let updates = scalef
            .received()
            .iter()
            .filter(|r| r.body["status"] == "rejected")
            .count();
        // The Scalef order's own Legion event among them.
        if (by_order.len() as u64 > ORDERS && updates > 0) || Instant::now() > deadline {
            break by_order;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for n in &acked {
        let order_id = (500_000 + n).to_string();
        let ids = events.get(&order_id).unwrap_or_else(|| {
            panic!("order {order_id} was answered 200 but never reached Legion")
        });
        assert_eq!(
            ids.len(),
            1,
            "order {order_id}: different Legion event ids {ids:?}"
        );
    }

    // Scalef: the create, then the approval, then the rejection (a request repeated after
    // the kill may come twice in a row, with the same Idempotency-Key).
    let received = scalef.received();
    let mut steps: Vec<String> = received
        .iter()
        .map(|r| {
            if r.path.ends_with("/conversion") {
                "create".to_string()
            } else {
                r.body["status"].as_str().unwrap().to_string()
            }
        })
        .collect();
    steps.dedup();
    assert_eq!(steps, ["create", "approved", "rejected"], "{received:#?}");
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for request in &received {
        let step = format!("{} {}", request.path, request.body["status"]);
        let key = request.headers["idempotency-key"]
            .to_str()
            .unwrap()
            .to_string();
        keys.entry(step).or_default().insert(key);
    }
    assert!(keys.values().all(|keys| keys.len() == 1), "{keys:?}");

    // In the store, every delivery of every webhook comes to rest: Legion's and Scalef's
    // delivered, Salekit's (no credentials here) kept as dry runs; none is left pending,
    // waiting, leased or dead.
    let store = storehook::store::open(&store_url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let unsettled = loop {
        let unsettled: Vec<_> = store
            .list_deliveries(&DeliveryFilter::default())
            .await
            .unwrap()
            .into_iter()
            .filter(|d| {
                !matches!(
                    d.status,
                    DeliveryStatus::Delivered | DeliveryStatus::DryRun | DeliveryStatus::Skipped
                )
            })
            .collect();
        if unsettled.is_empty() || Instant::now() > deadline {
            break unsettled;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(unsettled.is_empty(), "{unsettled:#?}");
    let salekit = store
        .list_deliveries(&DeliveryFilter {
            destination: Some("salekit".into()),
            ..DeliveryFilter::default()
        })
        .await
        .unwrap();
    assert!(
        !salekit.is_empty(),
        "the orders' Salekit records are stored"
    );
}

const ADMIN_TOKEN: &str = "instances-admin-token-for-tests";

/// A `storehook serve` process's log, line by line, as it comes.
struct ServerLog {
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl ServerLog {
    /// The first line from now on that says `says` (waiting for it, up to a minute).
    fn wait_for(&mut self, says: &str) -> String {
        tokio::task::block_in_place(|| {
            loop {
                let line = self
                    .lines
                    .recv_timeout(Duration::from_secs(60))
                    .unwrap_or_else(|_| panic!("the log says `{says}`:\n{}", self.seen.join("\n")));
                self.seen.push(line.clone());
                if line.contains(says) {
                    break line;
                }
            }
        })
    }

    /// Every line so far.
    fn all(&mut self) -> &[String] {
        self.seen.extend(self.lines.try_iter());
        &self.seen
    }
}

/// `storehook serve` in `dir` on `store_url` with the mappings of `mappings` and the admin
/// token set, listening to the other instances: its base URL and log.
fn serve_instance(
    dir: &std::path::Path,
    store_url: &str,
    mappings: &std::path::Path,
) -> (Process, String, ServerLog) {
    let mut command = crate::cli::storehook(dir);
    command
        .env("STOREHOOK_STORE_URL", store_url)
        .env("STOREHOOK_MAPPINGS_DIR", mappings)
        .env("STOREHOOK_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "info");
    let (child, lines, seen, port) = crate::cli::serve(command);
    let mut log = ServerLog { lines, seen };
    // Announced before it listens, a reload would be missed.
    if !log
        .seen
        .iter()
        .any(|line| line.contains("listening for the other instances' announcements"))
    {
        log.wait_for("listening for the other instances' announcements");
    }
    (child, format!("http://127.0.0.1:{port}"), log)
}

/// The description of `id` among the live mappings a `GET /api/mappings` lists, and the
/// listing.
async fn live_description(client: &reqwest::Client, base: &str, id: &str) -> (String, Value) {
    let listed: Value = client
        .get(format!("{base}/api/mappings"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let description = listed["live"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("{id} is live: {listed}"))["description"]
        .as_str()
        .unwrap()
        .to_string();
    (description, listed)
}

/// Polls `base`'s live mappings until `id`'s description is `wanted`.
async fn wait_for_description(client: &reqwest::Client, base: &str, id: &str, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (description, listed) = live_description(client, base, id).await;
        if description == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{base} never took `{wanted}`: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two `storehook serve` processes on one PostgreSQL schema, sharing a mappings directory:
/// a reload asked of one through the admin API reaches the other, which loads the changed
/// file and logs that another instance announced it; with a broken file the other keeps the
/// mappings in force, and its log and listing name the file. A reload from the dashboard
/// travels the other way. Neither instance reloads on its own announcement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mappings_reload_asked_of_one_instance_reaches_the_other_and_a_broken_file_keeps_its_live_ones()
 {
    let Some(schema) = crate::postgres::fresh_schema("reload across instances").await else {
        return;
    };
    let store_url = schema.store_url();
    let dir = tempfile::tempdir().unwrap();
    let mappings = dir.path().join("mappings");
    crate::admin_api::copy_of_the_mappings(&mappings);
    let file = mappings.join("haravan/legion-purchase.toml");
    let shipped = std::fs::read_to_string(&file).unwrap();
    let id = "haravan/legion-purchase";
    let (a, a_base, mut a_log) = serve_instance(dir.path(), &store_url, &mappings);
    let (b, b_base, mut b_log) = serve_instance(dir.path(), &store_url, &mappings);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (shipped_description, listed) = live_description(&client, &b_base, id).await;
    let count = listed["live"].as_array().unwrap().len();

    // A changed file, reloaded on A through the admin API: A answers with its own count and
    // says the others were told; B takes the change.
    let changed = "Legion purchase event, as changed on every instance";
    std::fs::write(&file, shipped.replace(&shipped_description, changed)).unwrap();
    let reload = || {
        client
            .post(format!("{a_base}/api/mappings/reload"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
    };
    let answer = reload().await.unwrap();
    assert_eq!(answer.status(), 200);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer, json!({"count": count, "announced": true}));
    wait_for_description(&client, &b_base, id, changed).await;
    let line = b_log.wait_for("mappings reloaded as announced by another instance");
    for says in ["admin API", "127.0.0.1", &format!("{count} live")] {
        assert!(line.contains(says), "{says}: {line}");
    }

    // A broken file: A refuses (422) and still tells B, which keeps its mappings in force and
    // logs why, naming the file.
    std::fs::write(&file, "description = \"half written\"\nplatform = ").unwrap();
    let answer = reload().await.unwrap();
    assert_eq!(answer.status(), 422);
    let answer: Value = answer.json().await.unwrap();
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("legion-purchase.toml")
            && message.contains("announced to the other instances"),
        "{answer}"
    );
    let line = b_log.wait_for("mappings not reloaded as announced by another instance");
    assert!(
        line.contains("legion-purchase.toml") && line.contains(&format!("count={count}")),
        "{line}"
    );
    let (description, listed) = live_description(&client, &b_base, id).await;
    assert_eq!(description, changed, "the mappings in force stay: {listed}");
    assert_eq!(listed["live"].as_array().unwrap().len(), count);
    assert!(
        listed["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().contains("legion-purchase.toml")),
        "{listed}"
    );

    // Fixed, and reloaded from B's dashboard: A takes it.
    let fixed = "Legion purchase event, fixed and reloaded from the dashboard";
    std::fs::write(&file, shipped.replace(&shipped_description, fixed)).unwrap();
    let login = client
        .post(format!("{b_base}/admin/login"))
        .form_fields(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    let session = login.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = client
        .get(format!("{b_base}/admin/mappings"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = crate::dashboard::csrf_of(&page);
    let reloaded = client
        .post(format!("{b_base}/admin/mappings/reload"))
        .header("cookie", &session)
        .form_fields(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(reloaded.status(), 303);
    let to = reloaded.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(to, format!("/admin/mappings?reloaded={count}&announced=1"));
    let page = client
        .get(format!("{b_base}{to}"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"id="announced""#), "{page}");
    wait_for_description(&client, &a_base, id, fixed).await;
    let line = a_log.wait_for("mappings reloaded as announced by another instance");
    assert!(line.contains("dashboard"), "{line}");

    // Each heard the other's announcements, never its own: A's own reloads came before B's
    // announcement, which A heard.
    crate::cli::stop(a);
    crate::cli::stop(b);
    let heard = |log: &mut ServerLog| -> Vec<String> {
        log.all()
            .iter()
            .filter(|line| line.contains("as announced by another instance"))
            .cloned()
            .collect()
    };
    let a_heard = heard(&mut a_log);
    assert_eq!(a_heard.len(), 1, "{a_heard:#?}");
    let b_heard = heard(&mut b_log);
    assert_eq!(b_heard.len(), 2, "{b_heard:#?}");
    assert!(b_heard.iter().all(|line| line.contains("admin API")));
    drop(schema);
}

/// `announce_reload` on PostgreSQL: heard by the other stores opened on the same schema,
/// neither by the store that announced it nor by a store of another schema of the same
/// database (channels are per database).
#[tokio::test]
async fn a_reload_announced_on_postgresql_is_heard_in_its_schema_only_and_not_by_its_announcer() {
    let Some(shop) = crate::postgres::fresh_schema("reload announcements by schema").await else {
        return;
    };
    let Some(other) = crate::postgres::fresh_schema("reload announcements by schema").await else {
        return;
    };
    let open = |url: String| async move { storehook::store::open(&url).await.unwrap() };
    let a = open(shop.store_url()).await;
    let b = open(shop.store_url()).await;
    let c = open(other.store_url()).await;
    let c2 = open(other.store_url()).await;
    let mut heard = Vec::new();
    for store in [&a, &b, &c] {
        let mut announcements = store.subscribe().expect("PostgreSQL announces");
        let first = tokio::time::timeout(Duration::from_secs(10), announcements.recv()).await;
        assert_eq!(
            first.unwrap(),
            Some(Announcement::Listening { again: false })
        );
        heard.push(announcements);
    }
    // One after the other: each is committed, and so heard, after the one before.
    for (store, client) in [(&a, "10.0.0.1"), (&b, "10.0.0.2"), (&c2, "10.0.0.3")] {
        assert!(store.announce_reload("admin API", client).await.unwrap());
    }
    // The first reload each hears.
    let mut first_reload = Vec::new();
    for announcements in &mut heard {
        let reload = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match announcements.recv().await {
                    Some(Announcement::Reload(reload)) => break reload,
                    Some(_) => continue,
                    None => panic!("the announcements ended"),
                }
            }
        })
        .await
        .expect("a reload is heard");
        assert_eq!(reload.via, "admin API");
        assert!(
            reload.from.contains(&std::process::id().to_string()),
            "{reload:?}"
        );
        first_reload.push(reload.client);
    }
    assert_eq!(
        first_reload,
        [
            "10.0.0.2", // a: b's, not its own before it
            "10.0.0.1", // b: a's
            "10.0.0.3", // c: c2's, not a's nor b's of the other schema
        ]
    );
}
