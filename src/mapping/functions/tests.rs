//! The functions through jq, as mappings call them.

use crate::mapping::expr::tests::{one, run};
use crate::mapping::expr::{Bindings, Expr, Input, Limits};
use serde_json::{Value, json};

/// The one output of `code` over a raw JSON body, serialized.
fn over_body(code: &str, body: &str) -> String {
    let input = Input::parse(body.as_bytes()).expect("valid JSON");
    let bindings = Bindings::new("t", "s", &Value::Null, &Value::Null);
    let expr = Expr::compile(code).unwrap_or_else(|e| panic!("{code}: {e}"));
    let value = expr.eval_first(&input, &bindings, &Limits::default());
    serde_json::to_string(&value.expect("evaluates").expect("one value")).expect("JSON")
}

fn text(code: &str, input: Value) -> String {
    serde_json::to_string(&one(code, input)).expect("JSON")
}

#[test]
fn uuid5_matches_python() {
    // python3: uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, "storehook/legion"), "haravan/1071234501")
    let id = one(
        r#"uuid5("storehook/legion"; "haravan/1071234501")"#,
        Value::Null,
    );
    assert_eq!(id, json!("c1ee9a29-d5ce-511b-8ec5-3616653fe89c"));
    // python3: uuid.uuid5(uuid.NAMESPACE_DNS, "example.com")
    let id = one(
        r#"uuid5("6ba7b810-9dad-11d1-80b4-00c04fd430c8"; "example.com")"#,
        Value::Null,
    );
    assert_eq!(id, json!("cfbff0d1-9375-5685-968c-48ce8b15ae17"));
    let interpolated = one(
        r#"uuid5("storehook/legion"; "\($source)/\(.id)")"#,
        json!({"id": 1071234501}),
    );
    assert_eq!(interpolated, json!("c1ee9a29-d5ce-511b-8ec5-3616653fe89c"));
    assert!(
        run(r#"uuid5("ns"; 5)"#, Value::Null)
            .unwrap_err()
            .contains("name must be a string")
    );
}

#[test]
fn phone_reads_common_forms() {
    let vietnamese = [
        "0912 345 678",
        "+84912345678",
        "84912345678",
        "0912345678",
        "0912.345.678",
        "091-234-5678",
        "+84 912 345 678",
        "0084912345678",
        "0084 912 345 678",
        "۰۹۱۲۳۴۵۶۷۸",
    ];
    let iranian = [
        "0912 123 4567",
        "09121234567",
        "+989121234567",
        "+98 912 123 4567",
        "00989121234567",
        "989121234567",
        "9121234567",
        "۰۹۱۲۱۲۳۴۵۶۷",
        "+۹۸ ۹۱۲ ۱۲۳ ۴۵۶۷",
        "٠٩١٢١٢٣٤٥٦٧",
        "0912-123-4567",
    ];
    for (region, inputs, forms) in [
        (
            "VN",
            &vietnamese[..],
            ["+84912345678", "0912345678", "912345678"],
        ),
        (
            "IR",
            &iranian[..],
            ["+989121234567", "09121234567", "9121234567"],
        ),
    ] {
        for input in inputs {
            let got = one(
                &format!(r#"[phone("{region}"; "e164", "national", "national_no_zero")]"#),
                json!(input),
            );
            assert_eq!(got, json!(forms), "{region} {input}");
        }
    }
    assert_eq!(
        one(r#"phone("vn"; "national")"#, json!("0989123456")),
        json!("0989123456")
    );
}

/// A number of another country keeps its country code in e164 and has no national form in
/// the region: never cut down to a national number that belongs to nobody there.
#[test]
fn a_number_of_another_country_has_no_national_form_in_the_region() {
    for (region, input, e164) in [
        ("VN", "+1 408 555 0147", "+14085550147"),
        ("VN", "+98 912 123 4567", "+989121234567"),
        ("IR", "+84 912 345 678", "+84912345678"),
        ("IR", "0084912345678", "+84912345678"),
    ] {
        let got = one(
            &format!(r#"[phone("{region}"; "e164", "national", "national_no_zero")]"#),
            json!(input),
        );
        assert_eq!(got, json!([e164, null, null]), "{region} {input}");
    }
}

#[test]
fn phone_gives_null_for_what_is_not_a_number() {
    let long = "1".repeat(200);
    for input in [
        Value::Null,
        json!(""),
        json!("   "),
        json!(912345678),
        json!("abc"),
        json!("12345"),
        json!(long),
    ] {
        assert_eq!(
            one(r#"phone("VN"; "e164")"#, input.clone()),
            Value::Null,
            "{input}"
        );
    }
    let format = run(r#"phone("VN"; "international")"#, Value::Null).unwrap_err();
    assert!(format.contains("`international`"), "{format}");
    let region = run(r#"phone("XX"; "e164")"#, json!("0912345678")).unwrap_err();
    assert!(region.contains("`XX`"), "{region}");
}

#[test]
fn amounts_change_currency_only_at_an_exact_rate_rounded_half_away_from_zero() {
    let convert = |amount: Value, from: &str, to: &str| {
        one(
            &format!(r#"in_currency(.a; "{from}"; "{to}")"#),
            json!({ "a": amount }),
        )
    };
    for (amount, from, to, expected) in [
        (json!("611.00"), "VND", "VND", json!(611)),
        (json!("1180000.5"), "VND", " vnd ", json!(1180001)),
        (json!("-2.5"), "VND", "VND", json!(-3)),
        (json!("29.355"), "USD", "USD", json!(29.36)),
        (json!("29.35"), "usd", "USD", json!(29.35)),
        (json!(125000), "IRR", "IRT", json!(12500)),
        (json!("12345"), "IRR", "IRT", json!(1235)),
        (json!(1500), "IRT", "IRR", json!(15000)),
        (json!(2), "IRHT", "IRT", json!(2000)),
        (json!(3), "IRHR", "IRT", json!(300)),
        (json!(12500), "IRT", "IRHT", json!(12.5)),
        (json!("7"), "IRHT", "IRHR", json!(70)),
        (Value::Null, "IRT", "IRR", Value::Null),
    ] {
        assert_eq!(
            convert(amount.clone(), from, to),
            expected,
            "{amount} {from} → {to}"
        );
    }
    for (from, to, rate) in [
        ("IRT", "IRR", json!(10)),
        ("irr", "IRT", json!(0.1)),
        ("VND", "VND", json!(1)),
        ("USD", "VND", Value::Null),
        ("INR", "IRT", Value::Null),
    ] {
        assert_eq!(
            one(&format!(r#"currency_rate("{from}"; "{to}")"#), Value::Null),
            rate,
            "{from} → {to}"
        );
    }
    assert_eq!(one(r#"currency_rate(.c; "VND")"#, json!({})), Value::Null);
    let error = run(r#"in_currency(1; "USD"; "VND")"#, Value::Null).unwrap_err();
    assert!(error.contains("no exact rate from USD to VND"), "{error}");
}

#[test]
fn an_amount_is_allocated_in_proportion_to_the_unit_with_the_remainder_on_the_last_part() {
    for (weights, amount, currency, expected) in [
        (
            json!([300000, 300000]),
            json!(100000),
            "VND",
            json!([50000, 50000]),
        ),
        (
            json!([100000, 200000]),
            json!(100000),
            "VND",
            json!([33333, 66667]),
        ),
        (
            json!(["1", "1", "1"]),
            json!(100),
            "VND",
            json!([33, 33, 34]),
        ),
        (
            json!(["10.00", "20.00"]),
            json!("1.00"),
            "USD",
            json!([0.33, 0.67]),
        ),
        (json!([0, 0]), json!(5), "VND", json!([0, 5])),
        (json!([1000]), json!(0), "VND", json!([0])),
        (json!([]), json!(0), "VND", json!([])),
    ] {
        let got = one(
            &format!(r#"allocate({amount}; "{currency}")"#),
            weights.clone(),
        );
        assert_eq!(got, expected, "{amount} over {weights}");
    }
    let error = run(r#"allocate(1; "VND")"#, json!({})).unwrap_err();
    assert!(error.contains("expects an array"), "{error}");
}

#[test]
fn a_time_without_zone_is_read_on_the_shops_clock() {
    for (input, zone, expected) in [
        (
            json!("2026-03-12T09:15:40"),
            "Asia/Tehran",
            json!("2026-03-12T09:15:40+03:30"),
        ),
        (
            json!("2026-03-12T09:15:40"),
            "Asia/Ho_Chi_Minh",
            json!("2026-03-12T09:15:40+07:00"),
        ),
        (
            json!("2026-03-12T02:15:40Z"),
            "Asia/Tehran",
            json!("2026-03-12T02:15:40Z"),
        ),
        (
            json!("2026-03-12T09:15:40+07:00"),
            "UTC",
            json!("2026-03-12T09:15:40+07:00"),
        ),
        (Value::Null, "UTC", Value::Null),
    ] {
        assert_eq!(
            one(&format!(r#"in_zone("{zone}")"#), input.clone()),
            expected,
            "{input} in {zone}"
        );
    }
    assert_eq!(
        one(
            r#"in_zone("Asia/Tehran") | local_time("UTC"; "%Y-%m-%d %H:%M")"#,
            json!("2026-03-12T09:15:40")
        ),
        json!("2026-03-12 05:45")
    );
    let zone = run(r#"in_zone("Mars/Olympus")"#, json!("2026-03-12T09:15:40")).unwrap_err();
    assert!(zone.contains("`Mars/Olympus`"), "{zone}");
}

#[test]
fn money_is_exact() {
    assert_eq!(text(r#""1180000.00" | money"#, Value::Null), "1180000");
    assert_eq!(text(r#""29.35" | money"#, Value::Null), "29.35");
    assert_eq!(text(r#""-310000" | money"#, Value::Null), "-310000");
    assert_eq!(text(r#"" 0.50 " | money"#, Value::Null), "0.5");
    assert_eq!(
        over_body(".total_price | money", r#"{"total_price": 1180000.0000}"#),
        "1180000"
    );
    assert_eq!(over_body(".p | money", r#"{"p": 29.35}"#), "29.35");
    assert_eq!(text("1e3 | money", Value::Null), "1000");
    assert_eq!(over_body(".p | money", r#"{"p": -310000}"#), "-310000");
    assert_eq!(over_body(".p | money", r#"{"p": -310000.00}"#), "-310000");
    // whole floats from 2^53 on are read from their text
    assert_eq!(
        over_body(".p | money", r#"{"p": 1e17}"#),
        "100000000000000000"
    );
    assert_eq!(one("null | money", Value::Null), Value::Null);
    assert_eq!(one(r#""" | money"#, Value::Null), Value::Null);
    for bad in [json!("abc"), json!("1,5"), json!(true), json!([1])] {
        let err = run("money", bad.clone()).unwrap_err();
        assert!(err.contains(&bad.to_string()), "{err}");
    }
}

#[test]
fn money_sum_is_exact() {
    assert_eq!(text(r#"["0.1", "0.2"] | money_sum"#, Value::Null), "0.3");
    assert_eq!(text("[0.1, 0.2] | money_sum", Value::Null), "0.3");
    assert_eq!(
        over_body(
            ".a | money_sum",
            r#"{"a": [0.1, 0.2, "1180000.0000", null]}"#
        ),
        "1180000.3"
    );
    assert_eq!(text("[] | money_sum", Value::Null), "0");
    assert_eq!(text(r#"["29.35", "-29.35"] | money_sum"#, Value::Null), "0");
    assert!(
        run(r#""1" | money_sum"#, Value::Null)
            .unwrap_err()
            .contains("array")
    );
    assert!(
        run(r#"["1", "x"] | money_sum"#, Value::Null)
            .unwrap_err()
            .contains(r#""x""#)
    );
}

#[test]
fn local_time_reads_every_storefront_form() {
    let hcm = r#"local_time("Asia/Ho_Chi_Minh"; "%Y-%m-%d %H:%M:%S")"#;
    let tehran = r#"local_time("Asia/Tehran"; "%Y-%m-%d %H:%M:%S")"#;
    // Haravan: UTC with 1 to 7 fraction digits
    assert_eq!(
        one(hcm, json!("2021-05-13T07:29:20.1Z")),
        json!("2021-05-13 14:29:20")
    );
    assert_eq!(
        one(hcm, json!("2021-05-13T07:29:20.1234567Z")),
        json!("2021-05-13 14:29:20")
    );
    assert_eq!(
        one(tehran, json!("2021-05-13T07:29:20.1Z")),
        json!("2021-05-13 11:59:20")
    );
    // Shopify: the shop's offset
    assert_eq!(
        one(tehran, json!("2026-03-14T10:22:06+07:00")),
        json!("2026-03-14 06:52:06")
    );
    // WooCommerce *_gmt: no zone, UTC
    assert_eq!(
        one(hcm, json!("2026-03-14T03:22:09")),
        json!("2026-03-14 10:22:09")
    );
    assert_eq!(
        one(
            "local_time($vars.zone; \"%H:%M\")",
            json!("2026-03-14T03:22:09")
        ),
        json!("10:22")
    );
    assert_eq!(one(hcm, Value::Null), Value::Null);
    assert!(
        run(hcm, json!("yesterday"))
            .unwrap_err()
            .contains(r#""yesterday""#)
    );
    let zone = run(
        r#"local_time("Mars/Base"; "%H")"#,
        json!("2026-03-14T03:22:09"),
    )
    .unwrap_err();
    assert!(zone.contains("`Mars/Base`"), "{zone}");
}

#[test]
fn epoch_ms_reads_every_storefront_form() {
    // python3: datetime(...).timestamp() * 1000
    assert_eq!(
        one("epoch_ms", json!("2021-05-13T07:29:20.1Z")),
        json!(1620890960100i64)
    );
    assert_eq!(
        one("epoch_ms", json!("2026-03-14T10:22:06+07:00")),
        json!(1773458526000i64)
    );
    assert_eq!(
        one("epoch_ms", json!("2026-03-14T03:22:09")),
        json!(1773458529000i64)
    );
    assert_eq!(one("epoch_ms", Value::Null), Value::Null);
    assert!(run("epoch_ms", json!(5)).is_err());
}

#[test]
fn url_param_reads_urls_paths_and_queries() {
    let url = json!("https://shop.vn/p?a=1&aff_sid=x%20y&aff_sid=second#frag");
    assert_eq!(one(r#"url_param("aff_sid")"#, url), json!("x y"));
    assert_eq!(
        one(
            r#"url_param("aff_sid")"#,
            json!("/?utm_source=scalef&aff_sid=abc")
        ),
        json!("abc")
    );
    assert_eq!(one(r#"url_param("b")"#, json!("a=1&b=2+3")), json!("2 3"));
    assert_eq!(one(r#"url_param("c")"#, json!("/?a=1#c=3")), Value::Null);
    assert_eq!(
        one(r#"url_param("a")"#, json!("/products/shirt")),
        Value::Null
    );
    assert_eq!(one(r#"url_param("a")"#, Value::Null), Value::Null);
    assert_eq!(
        one(
            r#"[$vars.names[] as $n | url_param($n)]"#,
            json!("/?aff_sid=9")
        ),
        json!([null, "9"])
    );
}

#[test]
fn attr_reads_note_attributes_or_meta_data() {
    let haravan = json!({"note_attributes": [{"name": "ref", "value": "A1"}, {"name": "ref", "value": "A2"}]});
    assert_eq!(one(r#"attr("ref")"#, haravan.clone()), json!("A1"));
    assert_eq!(one(r#"attr("cid")"#, haravan), Value::Null);
    let woo = json!({"meta_data": [{"id": 1, "key": "flag", "value": false}, {"key": "o", "value": {"a": 1}}]});
    assert_eq!(
        one(r#"[attr("flag"), attr("o")]"#, woo),
        json!([false, {"a": 1}])
    );
    assert_eq!(
        one(
            r#"attr("x")"#,
            json!({"note_attributes": null, "meta_data": "junk"})
        ),
        Value::Null
    );
    assert_eq!(one(r#"attr("x")"#, json!("not an order")), Value::Null);
}

#[test]
fn first_of_skips_empty_values() {
    assert_eq!(
        one(r#"first_of([null, "", [], {}, .a, "x"])"#, json!({"a": 0})),
        json!(0)
    );
    assert_eq!(one("first_of([null, false])", Value::Null), json!(false));
    assert_eq!(one(r#"first_of([null, ""])"#, Value::Null), Value::Null);
    assert_eq!(one("first_of([])", Value::Null), Value::Null);
    assert_eq!(one(r#"first_of("x")"#, Value::Null), json!("x"));
}
