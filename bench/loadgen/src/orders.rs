//! Distinct, correctly signed Haravan orders made from one recorded webhook.
//!
//! The fixture's JSON is parsed once; the fields that make an order distinct are replaced by
//! markers and the document is serialised once into a template. Each order is then the
//! template with the markers filled in (a few string copies) and signed like Haravan signs:
//! `base64(HMAC-SHA256(secret, raw body))` in `X-Haravan-Hmacsha256`.
//!
//! Storehook recognises a repeated Haravan webhook by org id + topic + order `id` +
//! `updated_at`, and each mapping's delivery key is the order id, so every order here gets
//! its own `id` and `updated_at` (and its own number, name, e-mail and phones): nothing is
//! short-cut as a duplicate.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use sha2::Sha256;
use storehook::fixture::Fixture;
use tokio::sync::mpsc;

type HmacSha256 = Hmac<Sha256>;

/// Haravan's signature header, as its documentation spells it (what storehook tries first).
pub const SIGNATURE_HEADER: &str = "X-Haravan-Hmacsha256";
/// Both spellings seen in the wild: neither is copied from the recorded headers.
const RECORDED_SIGNATURE_HEADERS: &[&str] = &["x-haravan-hmacsha256", "x-haravan-hmac-sha256"];

/// The headers to send with every order: the recorded ones without the signature (it is
/// computed per body), `Content-Length` and `Host` (set per request).
pub fn request_headers(fixture: &Fixture) -> anyhow::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in &fixture.headers {
        let lower = name.to_ascii_lowercase();
        if RECORDED_SIGNATURE_HEADERS.contains(&lower.as_str())
            || lower == "content-length"
            || lower == "host"
        {
            continue;
        }
        map.append(
            HeaderName::from_bytes(name.as_bytes())
                .with_context(|| format!("header name `{name}`"))?,
            HeaderValue::from_str(value).with_context(|| format!("header `{name}` value"))?,
        );
    }
    if !map.contains_key(hyper::header::CONTENT_TYPE) {
        map.insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    Ok(map)
}

/// The HMAC keyed with the secret, cloned for each body (the key is hashed once).
#[derive(Clone)]
pub struct Signer(HmacSha256);

impl Signer {
    pub fn new(secret: &str) -> Signer {
        Signer(HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length"))
    }

    /// `base64(HMAC-SHA256(secret, body))`.
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.0.clone();
        mac.update(body);
        STANDARD.encode(mac.finalize().into_bytes())
    }
}

/// What varies from one order to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// `id` (a JSON number).
    Id,
    /// `number` (a JSON number).
    Number,
    /// `order_number` and `name` (`#<id>`).
    OrderName,
    /// `updated_at`.
    UpdatedAt,
    /// `email` and `customer.email`.
    Email,
    /// Every phone: customer, its addresses, billing and shipping address.
    Phone,
}

impl Slot {
    const ALL: [Slot; 6] = [
        Slot::Id,
        Slot::Number,
        Slot::OrderName,
        Slot::UpdatedAt,
        Slot::Email,
        Slot::Phone,
    ];

    fn marker(self) -> String {
        format!("@@loadgen:{self:?}@@")
    }

    fn is_number(self) -> bool {
        matches!(self, Slot::Id | Slot::Number)
    }
}

enum Part {
    Text(Vec<u8>),
    Slot(Slot),
}

/// Where one run's ids and times start: distinct runs against the same store must not
/// collide, or the second run's orders would be duplicates.
#[derive(Debug, Clone, Copy)]
pub struct RunBase {
    /// Order `i` has id `id_base + i`.
    pub id_base: u64,
    /// Order `i` was updated at `updated_base_ms + i` (Unix milliseconds).
    pub updated_base_ms: u64,
}

impl RunBase {
    /// Ids from the wall clock (seconds × 10⁶): a run started later never reaches an id of
    /// an earlier one unless that one sent more than a million requests a second.
    pub fn from_clock() -> RunBase {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        RunBase {
            id_base: now.as_secs() * 1_000_000,
            updated_base_ms: u64::try_from(now.as_millis()).unwrap_or(u64::MAX / 2),
        }
    }
}

/// The fixture's body with the distinct fields left as holes.
pub struct OrderTemplate {
    parts: Vec<Part>,
    base: RunBase,
    /// How many phone fields the fixture has (0 for a guest order without addresses).
    pub phone_fields: usize,
    typical_len: usize,
}

impl OrderTemplate {
    pub fn new(body: &[u8], base: RunBase) -> anyhow::Result<OrderTemplate> {
        let mut doc: Value = serde_json::from_slice(body).context("the fixture is not JSON")?;
        let Some(order) = doc.as_object_mut() else {
            bail!("the fixture is not a JSON object");
        };
        for field in ["id", "updated_at"] {
            if order.get(field).is_none_or(Value::is_null) {
                bail!("the fixture has no `{field}`: storehook would dedupe it by body hash");
            }
        }
        let marker = |slot: Slot| Value::String(slot.marker());
        order.insert("id".into(), marker(Slot::Id));
        order.insert("updated_at".into(), marker(Slot::UpdatedAt));
        for field in ["order_number", "name"] {
            order.insert(field.into(), marker(Slot::OrderName));
        }
        if order.contains_key("number") {
            order.insert("number".into(), marker(Slot::Number));
        }
        let mut phone_fields = 0;
        let mut set_phone = |holder: Option<&mut Value>| {
            if let Some(Value::Object(holder)) = holder
                && holder.get("phone").is_some_and(|p| !p.is_null())
            {
                holder.insert("phone".into(), marker(Slot::Phone));
                phone_fields += 1;
            }
        };
        set_phone(order.get_mut("billing_address"));
        set_phone(order.get_mut("shipping_address"));
        if let Some(Value::Object(customer)) = order.get_mut("customer") {
            set_phone(customer.get_mut("default_address"));
            if let Some(Value::Array(addresses)) = customer.get_mut("addresses") {
                for address in addresses {
                    set_phone(Some(address));
                }
            }
            if customer.get("phone").is_some_and(|p| !p.is_null()) {
                customer.insert("phone".into(), marker(Slot::Phone));
                phone_fields += 1;
            }
            if customer.get("email").is_some_and(Value::is_string) {
                customer.insert("email".into(), marker(Slot::Email));
            }
        }
        if order.get("email").is_some_and(Value::is_string) {
            order.insert("email".into(), marker(Slot::Email));
        }

        let text = serde_json::to_string(&doc).expect("a JSON value serialises");
        let mut parts = Vec::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("@@loadgen:") {
            let slot = Slot::ALL
                .into_iter()
                .find(|s| rest[at..].starts_with(&s.marker()))
                .context("the fixture itself contains `@@loadgen:`")?;
            let mut before = &rest[..at];
            let mut after = &rest[at + slot.marker().len()..];
            if slot.is_number() {
                // The marker is a JSON string; a number is written without the quotes.
                before = before.strip_suffix('"').expect("a marker is a JSON string");
                after = after.strip_prefix('"').expect("a marker is a JSON string");
            }
            parts.push(Part::Text(before.as_bytes().to_vec()));
            parts.push(Part::Slot(slot));
            rest = after;
        }
        parts.push(Part::Text(rest.as_bytes().to_vec()));
        let mut template = OrderTemplate {
            parts,
            base,
            phone_fields,
            typical_len: 0,
        };
        template.typical_len = template.render(0).len() + 16;
        Ok(template)
    }

    /// Order `i`'s body.
    pub fn render(&self, i: u64) -> Vec<u8> {
        let id = self.base.id_base + i;
        let updated_at = rfc3339_millis(self.base.updated_base_ms + i);
        // A Vietnamese mobile (Viettel 098…) per order: 10 million distinct ones.
        let n = i % 10_000_000;
        let phone = format!(
            "+84 98{} {:03} {:03}",
            n / 1_000_000,
            n / 1000 % 1000,
            n % 1000
        );
        let mut out = Vec::with_capacity(self.typical_len);
        for part in &self.parts {
            match part {
                Part::Text(text) => out.extend_from_slice(text),
                Part::Slot(Slot::Id) => out.extend_from_slice(id.to_string().as_bytes()),
                Part::Slot(Slot::Number) => out.extend_from_slice((i + 1).to_string().as_bytes()),
                Part::Slot(Slot::OrderName) => {
                    out.extend_from_slice(format!("#{id}").as_bytes());
                }
                Part::Slot(Slot::UpdatedAt) => out.extend_from_slice(updated_at.as_bytes()),
                Part::Slot(Slot::Email) => {
                    out.extend_from_slice(format!("buyer{id}@example.vn").as_bytes());
                }
                Part::Slot(Slot::Phone) => out.extend_from_slice(phone.as_bytes()),
            }
        }
        out
    }
}

/// One request's body and signature.
pub struct Order {
    pub body: Bytes,
    pub signature: HeaderValue,
}

/// Makes order `i`.
pub struct OrderMaker {
    pub template: OrderTemplate,
    pub signer: Signer,
}

impl OrderMaker {
    pub fn make(&self, i: u64) -> Order {
        let body = self.template.render(i);
        let signature = self.signer.sign(&body);
        Order {
            body: Bytes::from(body),
            signature: HeaderValue::from_str(&signature).expect("base64 is a valid header value"),
        }
    }

    /// Orders `range`, made on every core.
    pub fn make_many(&self, count: u64) -> Vec<Order> {
        let threads = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
            .max(1) as u64;
        let chunk = count.div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let start = (t * chunk).min(count);
                    let end = ((t + 1) * chunk).min(count);
                    scope.spawn(move || (start..end).map(|i| self.make(i)).collect::<Vec<_>>())
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("an order maker thread panicked"))
                .collect()
        })
    }
}

/// Orders handed out once each: first the ones made before the clock started, then (only
/// when those run out) ones a background thread makes during the run.
pub struct OrderPool {
    ready: Mutex<VecDeque<Order>>,
    overflow: tokio::sync::Mutex<mpsc::Receiver<Order>>,
    made_during_run: AtomicU64,
}

/// How many orders the background thread keeps ready beyond the prepared ones.
const OVERFLOW_CAPACITY: usize = 4096;

impl OrderPool {
    /// Makes `prepared` orders now, starts the background maker for the ones after them and
    /// waits until its buffer is full, so that no order is made on the clock unless the
    /// prepared ones run out.
    pub fn prepare(maker: OrderMaker, prepared: u64) -> OrderPool {
        let ready: VecDeque<Order> = maker.make_many(prepared).into();
        let (tx, rx) = mpsc::channel(OVERFLOW_CAPACITY);
        let probe = tx.clone();
        std::thread::Builder::new()
            .name("order-maker".into())
            .spawn(move || {
                for i in prepared.. {
                    if tx.blocking_send(maker.make(i)).is_err() {
                        break;
                    }
                }
            })
            .expect("a thread starts");
        while probe.capacity() > 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(probe);
        OrderPool {
            ready: Mutex::new(ready),
            overflow: tokio::sync::Mutex::new(rx),
            made_during_run: AtomicU64::new(0),
        }
    }

    /// The next order never handed out before.
    pub async fn next(&self) -> Order {
        if let Some(order) = self.ready.lock().expect("pool lock").pop_front() {
            return order;
        }
        let order = self
            .overflow
            .lock()
            .await
            .recv()
            .await
            .expect("the order maker runs as long as the pool");
        self.made_during_run.fetch_add(1, Ordering::Relaxed);
        order
    }

    /// Orders taken from the background maker rather than the prepared ones.
    pub fn made_during_run(&self) -> u64 {
        self.made_during_run.load(Ordering::Relaxed)
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for Unix milliseconds.
pub fn rfc3339_millis(ms: u64) -> String {
    let ms = i64::try_from(ms).expect("a Unix time in milliseconds fits in i64");
    jiff::Timestamp::from_millisecond(ms)
        .expect("a timestamp in jiff's range")
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::{Path, PathBuf};

    use super::*;

    const FIXTURE_SECRET: &str = "storehook-fixture-secret";

    fn fixture_path(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/haravan")
            .join(name)
    }

    fn paid() -> Fixture {
        Fixture::load(&fixture_path("paid-two-items-discount.json")).unwrap()
    }

    const BASE: RunBase = RunBase {
        id_base: 1_700_000_000_000_000,
        updated_base_ms: 1_773_281_883_400,
    };

    #[test]
    fn signs_the_recorded_body_as_haravan_did() {
        for name in [
            "paid-two-items-discount.json",
            "local-phone-click-id.json",
            "cancelled-refunded.json",
            "guest-no-customer.json",
        ] {
            let fixture = Fixture::load(&fixture_path(name)).unwrap();
            assert_eq!(
                Signer::new(FIXTURE_SECRET).sign(&fixture.body),
                fixture.header(SIGNATURE_HEADER).unwrap(),
                "{name}"
            );
            assert_ne!(
                Signer::new("another secret").sign(&fixture.body),
                fixture.header(SIGNATURE_HEADER).unwrap()
            );
        }
    }

    #[test]
    fn request_headers_drop_the_recorded_signature() {
        let headers = request_headers(&paid()).unwrap();
        assert!(headers.get("x-haravan-hmacsha256").is_none());
        assert_eq!(headers.get("x-haravan-topic").unwrap(), "orders/paid");
        assert_eq!(headers.get("x-haravan-org-id").unwrap(), "200000123456");
        assert_eq!(headers.get("content-type").unwrap(), "application/json");
    }

    #[test]
    fn orders_are_pairwise_distinct_and_correctly_signed() {
        let fixture = paid();
        let maker = OrderMaker {
            template: OrderTemplate::new(&fixture.body, BASE).unwrap(),
            signer: Signer::new(FIXTURE_SECRET),
        };
        assert_eq!(maker.template.phone_fields, 5);
        let orders = maker.make_many(2000);
        assert_eq!(orders.len(), 2000);
        let mut bodies = HashSet::new();
        let mut ids = HashSet::new();
        let mut dedupe_ids = HashSet::new();
        let mut phones = HashSet::new();
        for (i, order) in orders.iter().enumerate() {
            assert!(bodies.insert(order.body.clone()), "body {i} repeats");
            let doc: Value = serde_json::from_slice(&order.body).unwrap();
            let id = doc["id"].as_u64().unwrap();
            assert_eq!(id, BASE.id_base + i as u64);
            assert!(ids.insert(id));
            let updated = doc["updated_at"].as_str().unwrap().to_string();
            assert!(dedupe_ids.insert(format!("{id}:{updated}")));
            assert!(phones.insert(doc["customer"]["phone"].as_str().unwrap().to_string()));
            assert_eq!(doc["billing_address"]["phone"], doc["customer"]["phone"]);
            assert_eq!(
                order.signature.to_str().unwrap(),
                Signer::new(FIXTURE_SECRET).sign(&order.body)
            );
        }
    }

    /// The template is the fixture with only the distinct fields changed: rendering order i
    /// gives the same document as editing the parsed fixture directly.
    #[test]
    fn a_rendered_order_is_the_fixture_with_only_those_fields_changed() {
        let fixture = paid();
        let template = OrderTemplate::new(&fixture.body, BASE).unwrap();
        let rendered: Value = serde_json::from_slice(&template.render(7)).unwrap();
        let mut expected: Value = serde_json::from_slice(&fixture.body).unwrap();
        let id = BASE.id_base + 7;
        expected["id"] = id.into();
        expected["number"] = 8.into();
        expected["order_number"] = format!("#{id}").into();
        expected["name"] = format!("#{id}").into();
        expected["updated_at"] = "2026-03-12T02:18:03.407Z".into();
        expected["email"] = format!("buyer{id}@example.vn").into();
        expected["customer"]["email"] = format!("buyer{id}@example.vn").into();
        let phone: Value = "+84 980 000 007".into();
        expected["customer"]["phone"] = phone.clone();
        expected["customer"]["default_address"]["phone"] = phone.clone();
        expected["customer"]["addresses"][0]["phone"] = phone.clone();
        expected["billing_address"]["phone"] = phone.clone();
        expected["shipping_address"]["phone"] = phone;
        assert_eq!(rendered, expected);
    }

    #[test]
    fn a_guest_order_has_no_customer_to_change() {
        let fixture = Fixture::load(&fixture_path("guest-no-customer.json")).unwrap();
        let template = OrderTemplate::new(&fixture.body, BASE).unwrap();
        let doc: Value = serde_json::from_slice(&template.render(1)).unwrap();
        assert!(doc["customer"].is_null());
        assert_eq!(doc["id"].as_u64(), Some(BASE.id_base + 1));
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_773_281_883_400),
            "2026-03-12T02:18:03.400Z"
        );
        assert_eq!(
            rfc3339_millis(1_798_761_599_999),
            "2026-12-31T23:59:59.999Z"
        );
    }
}
