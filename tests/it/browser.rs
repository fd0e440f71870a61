//! The dashboard in a real Chromium, driven over WebDriver (`chromedriver`, started here on a
//! free port, its process group killed when the test ends): log in, find a webhook posted
//! through the real endpoint and its Legion payload, replay a dead delivery, try the
//! playground, break a mapping and reload. Each test saves a screenshot under
//! `target/screenshots/` (`docs/images/refresh.sh` copies some into the README's images).
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` the tests say why and pass, except
//! in CI (`CI=true`), where they fail: `.ci/run` installs both.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::dashboard::{TOKEN, dashboard_app};
use crate::harness::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a condition may take to hold, on a loaded two-core machine.
const DEADLINE: Duration = Duration::from_secs(30);

/// One browser at a time: Chromium is heavy, and the machine is small.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `chromedriver` on a free port, in a process group of its own: dropping it kills the
/// group (the driver and the Chromium it started).
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A logged-out browser, or `None` (after saying why) when this machine has no Chromium
/// outside CI. In CI a missing browser fails the test.
async fn browser() -> Option<(Browser, tokio::sync::MutexGuard<'static, ()>)> {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|path| !Path::new(path).exists())
        .collect();
    if !missing.is_empty() {
        let reason = format!(
            "{} not installed (apt-get install chromium chromium-driver)",
            missing.join(" and ")
        );
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the browser tests cannot run: {reason}; CI must run them (.ci/run installs them)"
        );
        eprintln!("browser test skipped: {reason}");
        return None;
    }
    let guard = ONE_BROWSER.lock().await;
    let port = free_port();
    let mut command = Command::new(CHROMEDRIVER);
    command
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let driver = Driver {
        child: command.spawn().expect("chromedriver starts"),
        port,
    };
    let url = format!("http://127.0.0.1:{}", driver.port);
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-dev-shm-usage", "--window-size=1280,1000",
                "--lang=en-US",
            ],
        }),
    );
    // The driver takes a moment to listen: connect until it answers, within the deadline.
    let started = Instant::now();
    let client = loop {
        match ClientBuilder::rustls()
            .expect("TLS roots")
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
        {
            Ok(client) => break client,
            Err(error) => {
                assert!(
                    started.elapsed() < DEADLINE,
                    "chromedriver did not start a session: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    Some((
        Browser {
            client,
            _driver: driver,
        },
        guard,
    ))
}

struct Browser {
    client: Client,
    _driver: Driver,
}

impl Browser {
    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("the page loads");
    }

    /// Logs in through the form, and waits for the overview.
    async fn log_in(&self, app: &TestApp) {
        self.goto(&format!("{}/admin", app.address)).await;
        // Without the session, the dashboard sends the browser to the login form.
        self.wait_for("#token").await;
        let token = self.client.find(Locator::Css("#token")).await.unwrap();
        token.send_keys(TOKEN).await.unwrap();
        self.client
            .find(Locator::Css("#login"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.wait_for("#totals").await;
    }

    /// Waits until the current page has an element matching `css`.
    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        let started = Instant::now();
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                return element;
            }
            self.fail_after(started, &format!("no `{css}` on the page"))
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Loads `url` again and again until an element matching `css` shows there.
    async fn reload_until(&self, url: &str, css: &str) -> fantoccini::elements::Element {
        let started = Instant::now();
        loop {
            self.goto(url).await;
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                return element;
            }
            self.fail_after(started, &format!("`{css}` never showed at {url}"))
                .await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn fail_after(&self, started: Instant, what: &str) {
        if started.elapsed() > DEADLINE {
            let source = self.client.source().await.unwrap_or_default();
            self.screenshot("failed").await;
            panic!("{what} within {DEADLINE:?}; the page:\n{source}");
        }
    }

    async fn text(&self, css: &str) -> String {
        self.wait_for(css).await.text().await.unwrap()
    }

    async fn click(&self, css: &str) {
        self.wait_for(css).await.click().await.unwrap();
    }

    /// Saves what the browser shows as `target/screenshots/NAME.png`.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(&path, png).unwrap();
        path
    }

    async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// The delivery rows of `mapping`, once one of them is `status`.
async fn wait_for_delivery(app: &TestApp, mapping: &str, status: &str) -> DeliveryRow {
    let started = Instant::now();
    loop {
        let rows = app.delivery_rows().await;
        if let Some(row) = rows
            .iter()
            .find(|r| r.mapping == mapping && r.status == status)
        {
            return row.clone();
        }
        assert!(
            started.elapsed() < DEADLINE,
            "no {mapping} delivery became {status}: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_webhook_posted_to_the_real_endpoint_is_listed_with_its_legion_payload() {
    let Some((browser, _one)) = browser().await else {
        return;
    };
    let (app, _legion, _) = dashboard_app(None).await;
    // A Vietnamese order from Haravan and a Persian one from the Iranian WooCommerce shop.
    app.post_paid_haravan_orders(8001, 2).await;
    let persian = fixture("woocommerce", "iran-irt-persian-digits");
    let response = app
        .post_fixture("shop-ir", &persian, secret_of("shop-ir"))
        .await;
    assert_eq!(response.status(), 200);
    wait_for_delivery(&app, "woocommerce/legion-purchase", "delivered").await;

    browser.log_in(&app).await;
    browser
        .reload_until(
            &format!("{}/admin", app.address),
            "svg.chart rect.delivered",
        )
        .await;
    browser.screenshot("overview").await;

    browser.click("a[href='/admin/webhooks']").await;
    let inbox = app.inbox().await;
    let id = inbox.last().unwrap().id;
    let row = browser
        .wait_for(&format!("#webhooks tr[data-webhook='{id}']"))
        .await;
    assert!(row.text().await.unwrap().contains("shop-ir"));
    assert_eq!(
        browser
            .client
            .find_all(Locator::Css("#webhooks tr[data-webhook]"))
            .await
            .unwrap()
            .len(),
        3
    );
    row.find(Locator::Css("a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // Its Legion delivery, delivered, with the payload Legion got: in تومان, names in Persian.
    let delivery = browser.wait_for(".delivery[data-status=delivered]").await;
    let text = delivery.text().await.unwrap();
    assert!(text.contains("legion"), "{text}");
    let payload = browser
        .text(".delivery[data-destination=legion][data-status=delivered] pre")
        .await;
    let payload: Value = serde_json::from_str(&payload).expect("the payload, as JSON");
    let stored = wait_for_delivery(&app, "woocommerce/legion-purchase", "delivered").await;
    assert_eq!(payload, stored.payload);
    assert_eq!(payload["payload"]["currency"], "تومان", "{payload}");
    let outcome = browser
        .text(".outcome[data-mapping='woocommerce/legion-purchase'][data-outcome=plan]")
        .await;
    assert!(outcome.contains("تومان"), "{outcome}");
    let body = browser.text("#body").await;
    assert!(body.contains("خیابان ولیعصر، پلاک ۱۲"), "{body}");
    let headers = browser.text("#headers").await;
    assert!(
        headers.contains("x-wc-webhook-signature") && headers.contains("***"),
        "{headers}"
    );
    assert!(!headers.contains(persian.header("X-WC-Webhook-Signature").unwrap()));
    browser.screenshot("webhook").await;
    browser.close().await;
}

#[tokio::test]
async fn a_dead_delivery_is_replayed_from_the_dead_letters_and_delivered() {
    let Some((browser, _one)) = browser().await else {
        return;
    };
    let (app, legion, refuse) = dashboard_app(None).await;
    refuse.store(true, Ordering::SeqCst);
    app.post_paid_haravan_orders(8101, 1).await;
    let dead = wait_for_delivery(&app, "haravan/legion-purchase", "dead").await;

    browser.log_in(&app).await;
    browser.click("a[href='/admin/dead']").await;
    let row = browser
        .wait_for(&format!("#dead tr[data-delivery='{}']", dead.id))
        .await;
    assert!(
        row.text().await.unwrap().contains("refused by the test"),
        "the destination's answer is shown"
    );
    refuse.store(false, Ordering::SeqCst);
    browser.click("#select-all").await;
    let boxes = browser
        .client
        .find_all(Locator::Css("input[name=ids]"))
        .await
        .unwrap();
    for checkbox in &boxes {
        assert_eq!(
            checkbox.prop("checked").await.unwrap().as_deref(),
            Some("true")
        );
    }
    browser.screenshot("dead-letters").await;
    browser.click("#replay-selected").await;
    let result = browser.text("#result").await;
    assert!(
        result.contains("Replayed 1 selected: 1 back in the queue"),
        "{result}"
    );
    // The webhook's page shows it delivered (once the worker has sent it).
    browser
        .reload_until(
            &format!("{}/admin/webhooks/{}", app.address, dead.webhook_id),
            &format!("#delivery-{}[data-status=delivered]", dead.id),
        )
        .await;
    let timeline = browser
        .text(&format!("#delivery-{} .timeline", dead.id))
        .await;
    assert!(
        timeline.contains("dead") && timeline.contains("delivered"),
        "both attempts: {timeline}"
    );
    assert!(!legion.received().is_empty());
    browser.screenshot("replayed").await;
    browser.close().await;
}

#[tokio::test]
async fn the_playground_shows_each_mapping_and_a_schema_error_for_a_pasted_payload() {
    let Some((browser, _one)) = browser().await else {
        return;
    };
    let (app, legion, _) = dashboard_app(None).await;
    browser.log_in(&app).await;
    browser.click("a[href='/admin/playground']").await;
    // A payload pasted in (set as a paste sets it), platform and topic picked.
    let body = String::from_utf8(fixture("haravan", "paid-two-items-discount").body).unwrap();
    let paste = |text: String| async {
        browser
            .client
            .execute(
                "document.getElementById('payload').value = arguments[0];",
                vec![Value::String(text)],
            )
            .await
            .unwrap();
    };
    paste(body.clone()).await;
    let topic = browser.wait_for("#topic").await;
    topic.clear().await.unwrap();
    topic.send_keys("orders/paid").await.unwrap();
    browser.click("#platform option[value='haravan']").await;
    browser.click("#try").await;
    let plan = browser
        .text(".outcome[data-mapping='haravan/legion-purchase'][data-outcome=plan]")
        .await;
    assert!(plan.contains("order_paid_price"), "{plan}");
    let outcomes = browser
        .client
        .find_all(Locator::Css(".outcome"))
        .await
        .unwrap();
    assert!(outcomes.len() >= 2, "every routed mapping side by side");

    // Without a total and a creation time, Legion's schema refuses the payload.
    let mut order: Value = serde_json::from_str(&body).unwrap();
    order.as_object_mut().unwrap().remove("total_price");
    order.as_object_mut().unwrap().remove("created_at");
    paste(serde_json::to_string_pretty(&order).unwrap()).await;
    browser.click("#try").await;
    let error = browser
        .text(".outcome[data-mapping='haravan/legion-purchase'][data-outcome=error]")
        .await;
    assert!(error.contains("Schema errors"), "{error}");
    let violations = browser
        .client
        .find_all(Locator::Css(
            ".outcome[data-mapping='haravan/legion-purchase'] .schema-errors li",
        ))
        .await
        .unwrap();
    assert!(violations.len() >= 2, "every violation is listed");
    browser
        .client
        .execute(
            "document.getElementById('results').scrollIntoView();",
            vec![],
        )
        .await
        .unwrap();
    browser.screenshot("playground").await;
    // Nothing was stored or sent.
    assert!(app.inbox().await.is_empty());
    assert!(legion.received().is_empty());
    browser.close().await;
}

/// Copies the directory `from` into `to`, recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_broken_mapping_is_shown_on_reload_while_the_live_ones_keep_working() {
    let Some((browser, _one)) = browser().await else {
        return;
    };
    let mappings = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings"),
        mappings.path(),
    );
    let (app, _legion, _) = dashboard_app(Some(mappings.path())).await;
    browser.log_in(&app).await;
    browser.click("a[href='/admin/mappings']").await;
    browser
        .wait_for("#mappings tr[data-mapping='haravan/legion-purchase']")
        .await;
    browser.wait_for("#disk-ok").await;

    let broken = mappings.path().join("haravan/legion-purchase.toml");
    let text = std::fs::read_to_string(&broken).unwrap();
    std::fs::write(&broken, format!("{text}\n[this is not toml\n")).unwrap();
    browser.click("#reload").await;
    let result = browser.text("#result").await;
    assert!(result.contains("Not reloaded"), "{result}");
    let errors = browser.text("#load-errors").await;
    assert!(errors.contains("legion-purchase.toml"), "{errors}");
    assert!(
        browser
            .client
            .find(Locator::Css(
                "#mappings tr[data-mapping='haravan/legion-purchase']"
            ))
            .await
            .is_ok(),
        "the live mapping is still listed"
    );
    browser.screenshot("mappings-broken").await;

    // The mappings in force keep translating: a new order still reaches Legion.
    app.post_paid_haravan_orders(8301, 1).await;
    let delivered = wait_for_delivery(&app, "haravan/legion-purchase", "delivered").await;
    browser
        .reload_until(
            &format!("{}/admin/webhooks/{}", app.address, delivered.webhook_id),
            ".delivery[data-status=delivered]",
        )
        .await;

    // Fixed, the reload takes.
    std::fs::write(&broken, text).unwrap();
    browser
        .goto(&format!("{}/admin/mappings", app.address))
        .await;
    browser.click("#reload").await;
    let result = browser.text("#result").await;
    assert!(result.starts_with("Reloaded:"), "{result}");
    browser.wait_for("#disk-ok").await;
    browser.close().await;
}
