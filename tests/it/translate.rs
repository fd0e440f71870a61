//! The shipped mappings over the recorded webhooks: snapshots of every plan, and the
//! properties shops rely on (amounts to the unit, one event per order, no click id → no
//! conversion).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::LazyLock;

use serde_json::{Value, json};
use storehook::domain::PlatformKind;
use storehook::fixture::Fixture;
use storehook::mapping::{Catalog, OperationSchema, Outcome, Plan, TranslateError, Webhook};

/// The shipped mappings with their defaults, whatever the machine's environment says;
/// loaded once for the whole test binary.
fn catalog() -> &'static Catalog {
    static CATALOG: LazyLock<Catalog> = LazyLock::new(|| load_catalog().with_projection(true));
    &CATALOG
}

/// The same, parsing every body whole instead of only what the mappings read.
fn unprojected_catalog() -> &'static Catalog {
    static CATALOG: LazyLock<Catalog> = LazyLock::new(|| load_catalog().with_projection(false));
    &CATALOG
}

fn load_catalog() -> Catalog {
    catalog_with_env(&[])
}

/// The shipped mappings with these environment variables set, and every other one unset,
/// and the shipped configuration's per-source values.
fn catalog_with_env(set: &[(&str, &str)]) -> Catalog {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
    let env = |name: &str| {
        set.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| value.to_string())
    };
    let config =
        storehook::config::Config::parse(storehook::config::EMBEDDED, "storehook.toml", &env)
            .expect("the shipped configuration loads");
    Catalog::load_with_env(&dir, &env)
        .map(|catalog| catalog.with_source_vars(config.source_vars()))
        .unwrap_or_else(|errors| {
            panic!(
                "{}",
                errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
}

fn platform_named(name: &str) -> PlatformKind {
    PlatformKind::ALL
        .into_iter()
        .find(|p| p.as_str() == name)
        .unwrap()
}

fn headers_of(fixture: &Fixture) -> BTreeMap<String, String> {
    fixture
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect()
}

fn topic_of(fixture: &Fixture, platform: PlatformKind) -> String {
    fixture
        .header(storehook::source::platform(platform).topic_header())
        .unwrap()
        .to_string()
}

fn translate_body(
    catalog: &Catalog,
    platform: PlatformKind,
    topic: &str,
    body: &[u8],
) -> Vec<Result<Outcome, TranslateError>> {
    let headers = BTreeMap::new();
    catalog.translate(&Webhook {
        source: platform.as_str(),
        platform,
        topic,
        headers: &headers,
        body,
    })
}

/// A recorded webhook through the shipped catalog, with its recorded topic and headers, as a
/// webhook of the source it names (else the one named after its platform).
fn translate_fixture(
    platform: PlatformKind,
    fixture: &Fixture,
) -> Vec<Result<Outcome, TranslateError>> {
    catalog().translate(&Webhook {
        source: fixture.source.as_deref().unwrap_or(platform.as_str()),
        platform,
        topic: &topic_of(fixture, platform),
        headers: &headers_of(fixture),
        body: &fixture.body,
    })
}

/// The plans a fixture becomes (its skips left out); an error fails the test.
fn plans_of(platform: &str, name: &str) -> Vec<Plan> {
    let platform = platform_named(platform);
    let fixture = crate::harness::fixture(platform.as_str(), name);
    translate_fixture(platform, &fixture)
        .into_iter()
        .filter_map(|r| match r.unwrap_or_else(|e| panic!("{e}")) {
            Outcome::Plan(plan) => Some(plan),
            Outcome::Skip(_) => None,
        })
        .collect()
}

#[test]
fn every_fixture_through_every_mapping() {
    let catalog = catalog();
    insta::glob!("../../fixtures", "*/*.json", |path| {
        let platform = platform_named(
            path.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap(),
        );
        let fixture = Fixture::load(path).unwrap();
        let topic = topic_of(&fixture, platform);
        let results: Vec<Value> = translate_fixture(platform, &fixture)
            .into_iter()
            .map(|r| match r {
                Ok(Outcome::Plan(plan)) => json!({ "plan": plan }),
                Ok(Outcome::Skip(skip)) => json!({ "skip": skip }),
                Err(err) => json!({ "error": err }),
            })
            .collect();
        let routed: Vec<String> = catalog
            .routed(platform, &topic)
            .map(|m| m.id.clone())
            .collect();
        insta::assert_json_snapshot!(
            json!({ "topic": topic, "routed": routed, "results": results })
        );
    });
}

#[test]
fn bodies_parsed_as_far_as_the_mappings_read_give_the_plans_of_whole_bodies() {
    let mut compared = 0;
    for platform in crate::harness::PLATFORMS {
        let platform = platform_named(platform);
        for fixture in crate::harness::fixtures(platform.as_str()) {
            let topic = topic_of(&fixture, platform);
            if !catalog().reads_part(platform, &topic) {
                continue;
            }
            let projected = translate_body(catalog(), platform, &topic, &fixture.body);
            let whole = translate_body(unprojected_catalog(), platform, &topic, &fixture.body);
            assert_eq!(
                format!("{projected:?}"),
                format!("{whole:?}"),
                "{}",
                fixture.path.display()
            );
            compared += 1;
        }
    }
    assert!(compared >= 12, "only {compared} fixtures were projected");
}

#[test]
fn every_shipped_fixture_translates_without_error() {
    for platform in crate::harness::PLATFORMS {
        for fixture in crate::harness::fixtures(platform) {
            let name = fixture
                .path
                .file_stem()
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            plans_of(platform, &name);
        }
    }
}

/// The order's total as an exact decimal string, to compare to the unit.
fn total_of(order: &Value, field: &str) -> String {
    match &order[field] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("no {field}: {other}"),
    }
}

fn same_amount(a: &str, b: &Value) -> bool {
    let parse = |s: &str| -> (i128, i128) {
        // Compare as integers of ten-thousandths: exact for money with ≤ 4 decimals.
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let frac = format!("{frac:0<4}");
        (int.parse().unwrap(), frac[..4].parse().unwrap())
    };
    parse(a) == parse(&b.to_string())
}

/// Each platform's paid order, in the currency Legion counts in (the Shopify one is a US
/// shop's: Legion counts in USD there, and phones are US numbers), becomes one event with
/// the order's amounts.
#[test]
fn paid_orders_become_legion_events_with_the_orders_amounts() {
    let usd = catalog_with_env(&[("LEGION_CURRENCY", "USD"), ("STOREHOOK_PHONE_REGION", "US")]);
    for (platform, total_field, catalog) in [
        ("haravan", "total_price", catalog()),
        ("woocommerce", "total", catalog()),
        ("shopify", "total_price", &usd),
    ] {
        let fixture = crate::harness::fixture(platform, "paid-two-items-discount");
        let order: Value = serde_json::from_slice(&fixture.body).unwrap();
        let platform_kind = platform_named(platform);
        let topic = topic_of(&fixture, platform_kind);
        let plans: Vec<Plan> = translate_body(catalog, platform_kind, &topic, &fixture.body)
            .into_iter()
            .filter_map(|r| r.unwrap().plan().cloned())
            .collect();
        let legion: Vec<_> = plans
            .iter()
            .filter(|p| p.operation.as_str() == "legion.purchase_event")
            .collect();
        assert_eq!(legion.len(), 1, "{platform}: {plans:#?}");
        let event = &legion[0].payload;
        assert!(
            storehook::domain::Operation::LegionPurchaseEvent
                .violations(event)
                .is_empty()
        );
        let total = total_of(&order, total_field);
        assert!(
            same_amount(&total, &event["payload"]["order_paid_price"]),
            "{platform}: {total} vs {}",
            event["payload"]["order_paid_price"]
        );
        assert!(same_amount(
            &total,
            &event["payload"]["order_with_discount_price"]
        ));
        let code = event["payload"]["order_coupon_codes"][0].as_str().unwrap();
        assert_ne!(code, "empty", "{platform}: the discount code is carried");
        assert_eq!(event["payload"]["products"].as_array().unwrap().len(), 2);
        assert_eq!(legion[0].key, order["id"].to_string());
    }
}

/// A USD order in a shop whose Legion counts in VND has no exact rate: Legion's mapping
/// skips it, naming both currencies, and the other mappings still make their plans.
#[test]
fn an_order_in_a_currency_legion_does_not_count_in_is_skipped_naming_both() {
    let fixture = crate::harness::fixture("shopify", "paid-two-items-discount");
    let outcomes: Vec<Outcome> = translate_fixture(PlatformKind::Shopify, &fixture)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let skips: Vec<_> = outcomes.iter().filter_map(Outcome::skip).collect();
    assert_eq!(skips.len(), 1, "{outcomes:#?}");
    assert_eq!(skips[0].mapping, "shopify/legion-purchase");
    assert_eq!(
        skips[0].skipped,
        "the order is in USD, and Legion counts in VND"
    );
    assert!(
        outcomes
            .iter()
            .any(|o| o.mapping() == "shopify/salekit-audience")
    );
}

/// Every Scalef conversion the fixtures make: its parts' sale amounts add up to its total
/// sale amount, which is what was paid for the goods after every discount (the Haravan
/// order-level discount spread over the parts included).
#[test]
fn scalef_parts_add_up_to_the_total_sale_amount() {
    let mut conversions = 0;
    for platform in crate::harness::PLATFORMS {
        let kind = platform_named(platform);
        for fixture in crate::harness::fixtures(platform) {
            for outcome in translate_fixture(kind, &fixture) {
                let Ok(Outcome::Plan(plan)) = outcome else {
                    continue;
                };
                if plan.operation.as_str() != "scalef.create_conversion" {
                    continue;
                }
                conversions += 1;
                let parts: Vec<Value> = plan.payload["conversion_parts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|part| part["sale_amount"].clone())
                    .collect();
                let total = plan.payload["total_sale_amount"]["amount"].clone();
                let sum: f64 = parts.iter().map(|p| p.as_f64().unwrap()).sum();
                assert!(
                    (sum - total.as_f64().unwrap()).abs() < 1e-9,
                    "{}: {parts:?} vs {total}",
                    fixture.path.display()
                );
            }
        }
    }
    assert!(conversions >= 4, "{conversions}");
    let plans = plans_of("haravan", "order-discount-click-id");
    let conversion = plans
        .iter()
        .find(|p| p.operation.as_str() == "scalef.create_conversion")
        .unwrap();
    assert_eq!(
        conversion.payload["total_sale_amount"]["amount"],
        json!(500000),
        "600,000 of goods, 100,000 off the order"
    );
}

/// A Shopify test order is skipped by every mapping, unless its source allows test orders:
/// then it is translated like any other.
#[test]
fn a_test_order_is_sent_only_from_a_source_that_allows_test_orders() {
    let fixture = crate::harness::fixture("shopify", "test-order");
    let topic = topic_of(&fixture, PlatformKind::Shopify);
    let translate = |catalog: &Catalog, source: &str| -> Vec<Outcome> {
        catalog
            .translate(&Webhook {
                source,
                platform: PlatformKind::Shopify,
                topic: &topic,
                headers: &headers_of(&fixture),
                body: &fixture.body,
            })
            .into_iter()
            .map(Result::unwrap)
            .collect()
    };
    let skipped = translate(catalog(), "shopify");
    assert!(!skipped.is_empty());
    assert!(
        skipped
            .iter()
            .all(|o| o.skip().is_some_and(|s| s.skipped.contains("test order"))),
        "{skipped:#?}"
    );
    let allowing = load_catalog().with_source_vars(
        [(
            "shop-test".to_string(),
            serde_json::from_value(json!({"allow_test_orders": true})).unwrap(),
        )]
        .into(),
    );
    let sent = translate(&allowing, "shop-test");
    assert_eq!(sent.len(), skipped.len());
    assert!(sent.iter().all(|o| o.plan().is_some()), "{sent:#?}");
}

/// An order whose lines are all custom (no product id) still makes its Legion event, with
/// no products.
#[test]
fn an_order_of_custom_lines_only_still_makes_its_legion_event() {
    let fixture = crate::harness::fixture("shopify", "custom-line-item");
    let mut order: Value = serde_json::from_slice(&fixture.body).unwrap();
    for line in order["line_items"].as_array_mut().unwrap() {
        line["product_id"] = Value::Null;
    }
    let body = serde_json::to_vec(&order).unwrap();
    let legion: Vec<Plan> = translate_body(catalog(), PlatformKind::Shopify, "orders/paid", &body)
        .into_iter()
        .filter_map(|r| r.unwrap().plan().cloned())
        .filter(|p| p.operation.as_str() == "legion.purchase_event")
        .collect();
    assert_eq!(legion.len(), 1);
    assert_eq!(legion[0].payload["payload"]["products"], json!([]));
}

#[test]
fn a_woocommerce_order_updated_five_times_after_completion_has_one_legion_key() {
    let catalog = catalog();
    let fixture = crate::harness::fixture("woocommerce", "paid-two-items-discount");
    let mut keys = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for minute in 0..5 {
        let mut order: Value = serde_json::from_slice(&fixture.body).unwrap();
        order["status"] = "completed".into();
        order["date_modified_gmt"] = format!("2026-03-20T10:0{minute}:00").into();
        let body = serde_json::to_vec(&order).unwrap();
        for result in translate_body(catalog, PlatformKind::WooCommerce, "order.updated", &body) {
            let Outcome::Plan(plan) = result.unwrap() else {
                continue;
            };
            if plan.operation.as_str() == "legion.purchase_event" {
                keys.insert(plan.key.clone());
                ids.insert(plan.payload["id"].to_string());
            }
        }
    }
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(ids.len(), 1, "the event id is stable too: {ids:?}");
}

#[test]
fn an_order_without_click_id_yields_no_scalef_plan() {
    for platform in crate::harness::PLATFORMS {
        for name in ["paid-two-items-discount", "guest-no-customer"] {
            let plans = plans_of(platform, name);
            assert!(
                plans.iter().all(|p| p.destination != "scalef"),
                "{platform}/{name}: {plans:#?}"
            );
        }
        let plans = plans_of(platform, "local-phone-click-id");
        let conversion = plans
            .iter()
            .find(|p| p.operation.as_str() == "scalef.create_conversion")
            .unwrap_or_else(|| panic!("{platform}: a click id makes a conversion"));
        assert!(
            conversion.payload["click_id"]
                .as_str()
                .is_some_and(|c| c.len() == 32)
        );
    }
}

#[test]
fn a_cancelled_affiliate_order_rejects_its_conversion() {
    for platform in crate::harness::PLATFORMS {
        let plans = plans_of(platform, "cancelled-refunded");
        let update = plans
            .iter()
            .find(|p| p.operation.as_str() == "scalef.update_conversion_status")
            .unwrap_or_else(|| panic!("{platform}: {plans:#?}"));
        assert_eq!(update.payload["status"], "rejected");
        let needs = update.needs.as_ref().expect("it waits for the create");
        assert_eq!(needs.mapping, format!("{platform}/scalef-conversion"));
        assert!(
            plans
                .iter()
                .all(|p| p.operation.as_str() != "legion.purchase_event")
        );
    }
}

#[test]
fn local_phones_reach_legion_and_salekit_in_their_forms() {
    for platform in crate::harness::PLATFORMS {
        let plans = plans_of(platform, "local-phone-click-id");
        let legion = plans.iter().find(|p| p.destination == "legion").unwrap();
        assert_eq!(
            legion.payload["payload"]["username"], "912345678",
            "{platform}"
        );
        let salekit = plans.iter().find(|p| p.destination == "salekit").unwrap();
        assert_eq!(salekit.payload["phone"], "0912345678", "{platform}");
    }
}

mod arbitrary_json {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
            prop_oneof![
                Just("2026-03-14T10:22:06+07:00"),
                Just("0912 345 678"),
                Just("1180000.00"),
                Just("/?click_id=x&ref=y"),
                Just("paid"),
                Just("completed"),
                Just("-0.5"),
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            let keys = prop_oneof![
                Just("id".to_string()),
                Just("total_price".to_string()),
                Just("line_items".to_string()),
                Just("customer".to_string()),
                Just("phone".to_string()),
                Just("status".to_string()),
                Just("financial_status".to_string()),
                Just("note_attributes".to_string()),
                Just("meta_data".to_string()),
                Just("created_at".to_string()),
                Just("price".to_string()),
                Just("quantity".to_string()),
                Just("name".to_string()),
                Just("value".to_string()),
                Just("key".to_string()),
                Just("landing_site".to_string()),
                "[a-z_]{1,8}",
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(keys, inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        /// Never panics, and parsing only what the mappings read changes nothing.
        fn arbitrary_json_through_every_shipped_mapping_never_panics(value in json_value()) {
            let catalog = catalog();
            let body = serde_json::to_vec(&value).unwrap();
            for mapping in catalog.mappings() {
                for topic in &mapping.topics {
                    let projected = translate_body(catalog, mapping.platform, topic, &body);
                    let whole = translate_body(unprojected_catalog(), mapping.platform, topic, &body);
                    prop_assert_eq!(format!("{projected:?}"), format!("{whole:?}"));
                }
            }
        }
    }
}
