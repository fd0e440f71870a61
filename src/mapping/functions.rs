//! The functions mapping expressions have beyond standard jq: `uuid5`, `phone`, `money`,
//! `money_sum`, `local_time`, `epoch_ms`, `url_param`, `attr`, `first_of`; and the builtins
//! [`super::expr`] replaces ([`REPLACED`]): `range/3` drawing on a per-evaluation budget,
//! `fromjson` refusing deep nesting, and faster `null`, `empty` and `join`; and jq builtins
//! jaq lacks ([`DEFS`]: `IN`, `INDEX`, `toarray`).
//!
//! Natives are generic over the data type `D`, the way jaq-std writes its own; those that need
//! jaq-json's `Val` fix `D::V` to it as jaq-json does, and then `run::<D>` must be named, or
//! the function-pointer coercion fails with E0631.

use std::cell::Cell;
use std::str::FromStr;

use jaq_core::box_iter::{BoxIter, box_once};
use jaq_core::native::{Filter, Fun, bome, run, v};
use jaq_core::{DataT, Error, Exn, Native, RunPtr, ValR, ValX};
use jaq_json::{Num, Val};
use jaq_std::ValT;
use rust_decimal::Decimal;

/// Phone inputs longer than this are not phone numbers: `null`, without parsing.
const MAX_PHONE_CHARS: usize = 64;

/// Our natives, available in every expression.
pub(super) fn funs<D: for<'a> DataT<V<'a> = Val>>() -> impl Iterator<Item = Fun<D>> {
    natives::<D>().into_vec().into_iter().map(run::<D>)
}

fn natives<D: for<'a> DataT<V<'a> = Val>>() -> Box<[Filter<RunPtr<D>>]> {
    Box::new([
        ("uuid5", v(2), |mut cv| {
            let name = cv.0.pop_var();
            let namespace = cv.0.pop_var();
            bome(uuid5(&namespace, &name))
        }),
        ("phone", v(2), |mut cv| {
            let format = cv.0.pop_var();
            let region = cv.0.pop_var();
            bome(phone(&cv.1, &region, &format))
        }),
        ("money", v(0), |cv| bome(money(&cv.1))),
        ("money_sum", v(0), |cv| bome(money_sum(cv.1))),
        ("local_time", v(2), |mut cv| {
            let format = cv.0.pop_var();
            let zone = cv.0.pop_var();
            bome(local_time(&cv.1, &zone, &format))
        }),
        ("epoch_ms", v(0), |cv| bome(epoch_ms(&cv.1))),
        ("url_param", v(1), |mut cv| {
            let name = cv.0.pop_var();
            bome(url_param(&cv.1, &name))
        }),
        ("attr", v(1), |mut cv| {
            let name = cv.0.pop_var();
            bome(Ok(attr(&cv.1, &name)))
        }),
        ("first_of", v(1), |mut cv| {
            bome(Ok(first_of(cv.0.pop_var())))
        }),
    ])
}

/// jq builtins that jaq lacks, in jq (as jq defines them).
pub(super) const DEFS: &str = r#"
def IN(s): any(s == .; .);
def IN(src; s): any(src == s; .);
def INDEX(stream; idx_expr): reduce stream as $row ({}; .[$row | idx_expr | tostring] |= $row);
def INDEX(idx_expr): INDEX(.[]; idx_expr);
def toarray: if type == "array" then . else [.] end;
"#;

/// Builtins we replace: `range/3` and `fromjson` bounded (see the guard rails in
/// [`super::expr`]); `null`, `empty` and `join/1` as natives, which jaq runs without
/// interpreting a definition each time (`empty` keeps its path and update meaning).
pub(super) const REPLACED: [(&str, usize); 5] = [
    ("range", 3),
    ("fromjson", 0),
    ("null", 0),
    ("empty", 0),
    ("join", 1),
];

pub(super) fn replacements<D: for<'a> DataT<V<'a> = Val>>() -> impl Iterator<Item = Fun<D>> {
    let empty = Native::new(|_| Box::new(std::iter::empty()))
        .with_paths(|_| Box::new(std::iter::empty()))
        .with_update(|cv, _| box_once(Ok(cv.1)));
    let replaced = replaced::<D>().into_vec().into_iter().map(run::<D>);
    replaced.chain([("empty", v(0), empty)])
}

fn replaced<D: for<'a> DataT<V<'a> = Val>>() -> Box<[Filter<RunPtr<D>>]> {
    Box::new([
        ("range", v(3), |mut cv| {
            let by = cv.0.pop_var();
            let to = cv.0.pop_var();
            let from = cv.0.pop_var();
            Box::new(budgeted_range(from, to, by))
        }),
        ("fromjson", v(0), |cv| fromjson(&cv.1)),
        ("null", v(0), |_| box_once(Ok(Val::Null))),
        ("join", v(1), |mut cv| {
            let separator = cv.0.pop_var();
            bome(join(cv.1, &separator))
        }),
    ])
}

/// jq's `join`: null joins as `""`, numbers and booleans as their text.
pub(super) fn join(items: Val, separator: &Val) -> ValR<Val> {
    let separator = str_arg(separator, "join", "the separator")?;
    let items: Vec<Val> = items
        .into_seq()
        .map_err(|v| fail(format!("join: expects an array, got {v}")))?;
    let mut joined = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            joined.push_str(separator);
        }
        if let Some(bytes) = item.as_bytes() {
            joined.push_str(&String::from_utf8_lossy(bytes));
        } else if matches!(item, Val::Num(_) | Val::Bool(_)) {
            joined.push_str(&item.to_string());
        } else if !is_null(item) {
            return Err(fail(format!("join: cannot join {item}")));
        }
    }
    Ok(Val::from(joined))
}

thread_local! {
    /// Values `range` may still produce in the evaluation running on this thread. Set by
    /// [`set_range_budget`] before each evaluation; evaluation is synchronous, so the budget
    /// cannot leak into another one.
    static RANGE_BUDGET: Cell<u64> = const { Cell::new(0) };
}

pub(super) fn set_range_budget(values: u64) {
    RANGE_BUDGET.with(|b| b.set(values));
}

/// jaq-core's `range/3`, drawing one unit of the budget per value.
fn budgeted_range<'a, V: ValT + 'a>(
    from: V,
    to: V,
    by: V,
) -> impl Iterator<Item = ValX<'a, V>> + 'a {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let direction = by.partial_cmp(&V::from(0isize)).unwrap_or(Equal);
    let mut next = Some(from);
    std::iter::from_fn(move || {
        let x = next.take()?;
        let more = match direction {
            Greater => x < to,
            Less => x > to,
            Equal => x != to,
        };
        if !more {
            return None;
        }
        let spent = RANGE_BUDGET.with(|b| b.get().checked_sub(1).map(|left| b.set(left)));
        if spent.is_none() {
            let message = "range: the expression produced too many values (a mapping may iterate at most a bounded number of times)";
            return Some(Err(Exn::from(Error::str(message))));
        }
        match x.clone() + by.clone() {
            Ok(after) => next = Some(after),
            Err(e) => return Some(Err(Exn::from(e))),
        }
        Some(Ok(x))
    })
}

/// `fromjson` read with serde_json, which refuses nesting deeper than 128 levels (jaq-json's
/// reader recurses without a bound).
fn fromjson<'a>(v: &Val) -> BoxIter<'a, ValX<'a, Val>> {
    let Some(text) = v.as_utf8_bytes() else {
        return box_once(Err(Exn::from(Error::typ(v.clone(), "string"))));
    };
    let values: Vec<_> = serde_json::Deserializer::from_slice(text)
        .into_iter::<Val>()
        .map(|r| r.map_err(|e| Exn::from(Error::str(format!("fromjson: not JSON: {e}")))))
        .collect();
    Box::new(values.into_iter())
}

fn is_null(v: &Val) -> bool {
    matches!(v, Val::Null)
}

fn as_str(v: &Val) -> Option<&str> {
    v.as_utf8_bytes().and_then(|b| std::str::from_utf8(b).ok())
}

fn fail(message: String) -> Error<Val> {
    Error::str(message)
}

/// A string argument, or an error naming the function and the argument.
fn str_arg<'v>(v: &'v Val, function: &str, what: &str) -> Result<&'v str, Error<Val>> {
    as_str(v).ok_or_else(|| fail(format!("{function}: {what} must be a string, got {v}")))
}

pub(super) fn uuid5(namespace: &Val, name: &Val) -> ValR<Val> {
    let namespace = str_arg(namespace, "uuid5", "the namespace")?;
    let name = str_arg(name, "uuid5", "the name")?;
    let namespace = uuid::Uuid::parse_str(namespace)
        .unwrap_or_else(|_| uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, namespace.as_bytes()));
    Ok(Val::from(
        uuid::Uuid::new_v5(&namespace, name.as_bytes()).to_string(),
    ))
}

/// `.[key]` of an object, or `None` when it is null or not there (or `v` is no object).
fn field<'v>(v: &'v Val, key: &'static str) -> Option<&'v Val> {
    let Val::Obj(object) = v else {
        return None;
    };
    // a static key's bytes are borrowed, not copied
    let key = Val::utf8_str(key.as_bytes());
    object.get(&key).filter(|value| !is_null(value))
}

/// The value of the first `{name, value}` in `.note_attributes` or `{key, value}` in
/// `.meta_data` whose name is `name`, or null.
pub(super) fn attr(order: &Val, name: &Val) -> Val {
    for (list, name_key) in [("note_attributes", "name"), ("meta_data", "key")] {
        let Some(Val::Arr(entries)) = field(order, list) else {
            continue;
        };
        if let Some(entry) = entries
            .iter()
            .find(|e| field(e, name_key).is_some_and(|n| n == name))
        {
            return field(entry, "value").cloned().unwrap_or(Val::Null);
        }
    }
    Val::Null
}

/// The first element that is not null, `""`, `[]` or `{}`, or null. A non-array counts as
/// an array of itself.
pub(super) fn first_of(values: Val) -> Val {
    let present = |v: &Val| match v {
        Val::Null => false,
        Val::TStr(text) => !text.is_empty(),
        Val::Arr(items) => !items.is_empty(),
        Val::Obj(entries) => !entries.is_empty(),
        _ => true,
    };
    match values {
        Val::Arr(items) => items
            .iter()
            .find(|v| present(v))
            .cloned()
            .unwrap_or(Val::Null),
        value if present(&value) => value,
        _ => Val::Null,
    }
}

thread_local! {
    /// The last phone numbers read on this thread, parsed (`None`: not a valid number):
    /// one webhook's mappings usually read the same number several times and in several
    /// formats (Legion without the leading zero, Salekit with it), and parsing one takes
    /// microseconds; formatting a parsed one is cheaper.
    static PHONES: std::cell::RefCell<Vec<PhoneEntry>> = const {
        std::cell::RefCell::new(Vec::new())
    };
}

/// A number read on this thread: its region and text, and the valid number they are with
/// its formats as far as asked for (`None` when the text is not a valid number).
struct PhoneEntry {
    region: phonenumber::country::Id,
    text: String,
    number: Option<(phonenumber::PhoneNumber, [Option<String>; 3])>,
}

/// The formats `phone` writes, by their index in [`PhoneEntry`].
const PHONE_FORMATS: [&str; 3] = ["e164", "national", "national_no_zero"];

/// At most this many phone numbers are remembered per thread.
const PHONE_CACHE: usize = 16;

/// Loads the phone number metadata (about 50 ms, once per process), so that the first
/// webhook translated does not wait for it.
pub(super) fn load_phone_metadata() {
    let _ = parse_phone(phonenumber::country::Id::VN, "0912345678");
}

pub(super) fn phone(input: &Val, region: &Val, format: &Val) -> ValR<Val> {
    let format_text = str_arg(format, "phone", "the format")?;
    let Some(format) = PHONE_FORMATS.iter().position(|f| *f == format_text) else {
        let message = format!(
            "phone: unknown format `{format_text}` (use \"e164\", \"national\" or \"national_no_zero\")"
        );
        return Err(fail(message));
    };
    let region_text = str_arg(region, "phone", "the region")?;
    let region = phonenumber::country::Id::from_str(&region_text.trim().to_ascii_uppercase())
        .map_err(|_| {
            fail(format!(
                "phone: unknown region `{region_text}` (use a code like \"VN\")"
            ))
        })?;
    let Some(text) = as_str(input).map(str::trim) else {
        return Ok(Val::Null);
    };
    if text.is_empty() || text.chars().count() > MAX_PHONE_CHARS {
        return Ok(Val::Null);
    }
    let formatted = PHONES.with_borrow_mut(|phones| {
        let at = match phones
            .iter()
            .position(|e| e.region == region && e.text == text)
        {
            Some(at) => at,
            None => {
                if phones.len() == PHONE_CACHE {
                    phones.remove(0);
                }
                phones.push(PhoneEntry {
                    region,
                    text: text.to_string(),
                    number: parse_phone(region, text).map(|n| (n, [None, None, None])),
                });
                phones.len() - 1
            }
        };
        let (number, formats) = phones[at].number.as_mut()?;
        Some(
            formats[format]
                .get_or_insert_with(|| format_phone(number, PHONE_FORMATS[format]))
                .clone(),
        )
    });
    Ok(formatted.map_or(Val::Null, Val::from))
}

/// The valid number `text` is in `region`, or `None`.
fn parse_phone(region: phonenumber::country::Id, text: &str) -> Option<phonenumber::PhoneNumber> {
    phonenumber::parse(Some(region), text)
        .ok()
        .filter(|n| n.is_valid())
}

/// A number in a format: "e164", "national", or else national without its leading zero.
fn format_phone(number: &phonenumber::PhoneNumber, format: &str) -> String {
    use phonenumber::Mode;
    let digits = |s: String| s.chars().filter(char::is_ascii_digit).collect::<String>();
    match format {
        "e164" => number.format().mode(Mode::E164).to_string(),
        "national" => digits(number.format().mode(Mode::National).to_string()),
        _ => digits(number.national().to_string()),
    }
}

/// Whole floats below this (2⁵³) are integers exactly.
const MAX_EXACT_WHOLE_FLOAT: f64 = 9_007_199_254_740_992.0;

/// The exact decimal a money value stands for; `None` for null and blank strings.
fn decimal(v: &Val) -> Result<Option<Decimal>, Error<Val>> {
    let unreadable = || fail(format!("money: cannot read {v} as an amount"));
    let (mut float, long);
    // a number's text: a JSON literal as written, or the shortest round-trip of a float
    let text = match v {
        Val::Null => return Ok(None),
        Val::Num(Num::Int(i)) => return Ok(Some(Decimal::from(*i))),
        // whole amounts, as Haravan writes them (`1180000.0000`), exactly
        Val::Num(Num::Float(f)) if f.fract() == 0.0 && f.abs() < MAX_EXACT_WHOLE_FLOAT => {
            return Ok(Some(Decimal::from(*f as i64)));
        }
        Val::Num(Num::Float(f)) if f.is_finite() => {
            float = ryu::Buffer::new();
            float.format_finite(*f)
        }
        Val::Num(Num::Dec(text)) => text.as_str(),
        Val::Num(_) => {
            long = v.to_string();
            long.as_str()
        }
        _ => as_str(v).ok_or_else(unreadable)?.trim(),
    };
    if text.is_empty() {
        return Ok(None);
    }
    let parsed = if text.contains(['e', 'E']) {
        Decimal::from_scientific(text)
    } else {
        Decimal::from_str_exact(text)
    };
    parsed.map(Some).map_err(|_| unreadable())
}

/// A decimal as a jq number: an integer when whole, else the exact decimal text.
fn from_decimal(d: Decimal) -> ValR<Val> {
    let d = d.normalize();
    if d.scale() == 0
        && let Some(whole) = rust_decimal::prelude::ToPrimitive::to_i64(&d)
        && let Ok(whole) = isize::try_from(whole)
    {
        return Ok(Val::from(whole));
    }
    <Val as jaq_core::ValT>::from_num(&d.to_string())
}

pub(super) fn money(v: &Val) -> ValR<Val> {
    match decimal(v)? {
        Some(d) => from_decimal(d),
        None => Ok(Val::Null),
    }
}

pub(super) fn money_sum(v: Val) -> ValR<Val> {
    let items: Vec<Val> = v
        .into_seq()
        .map_err(|v| fail(format!("money_sum: expects an array of amounts, got {v}")))?;
    let mut sum = Decimal::ZERO;
    for item in &items {
        if let Some(d) = decimal(item)? {
            sum = sum
                .checked_add(d)
                .ok_or_else(|| fail(format!("money_sum: the sum overflows at {item}")))?;
        }
    }
    from_decimal(sum)
}

/// Reads the timestamp forms the storefronts send: RFC 3339 with `Z` or an offset (0–9
/// fraction digits), or a civil date-time without zone, taken as UTC.
fn timestamp(v: &Val, function: &str) -> Result<Option<jiff::Timestamp>, Error<Val>> {
    if is_null(v) {
        return Ok(None);
    }
    let unreadable = || fail(format!("{function}: cannot read {v} as a timestamp"));
    let text = as_str(v).ok_or_else(unreadable)?.trim();
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(Some(ts));
    }
    let civil = text
        .parse::<jiff::civil::DateTime>()
        .map_err(|_| unreadable())?;
    let zoned = civil
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .map_err(|_| unreadable())?;
    Ok(Some(zoned.timestamp()))
}

pub(super) fn local_time(input: &Val, zone: &Val, format: &Val) -> ValR<Val> {
    let zone = str_arg(zone, "local_time", "the time zone")?;
    let format = str_arg(format, "local_time", "the format")?;
    let tz = jiff::tz::TimeZone::get(zone)
        .map_err(|_| fail(format!("local_time: unknown time zone `{zone}`")))?;
    let Some(ts) = timestamp(input, "local_time")? else {
        return Ok(Val::Null);
    };
    jiff::fmt::strtime::format(format, &ts.to_zoned_datetime(tz))
        .map(Val::from)
        .map_err(|e| fail(format!("local_time: cannot format with `{format}`: {e}")))
}

pub(super) fn epoch_ms(input: &Val) -> ValR<Val> {
    match timestamp(input, "epoch_ms")? {
        Some(ts) => Ok(Val::Num(Num::from_integral(ts.as_millisecond()))),
        None => Ok(Val::Null),
    }
}

/// The query string of a URL, of a path with a query, or a bare query (`a=1&b=2`).
fn query_of(text: &str) -> &str {
    let text = text.split('#').next().unwrap_or_default();
    match text.split_once('?') {
        Some((_, query)) => query,
        None if text.contains('=') && !text.contains("://") && !text.starts_with('/') => text,
        None => "",
    }
}

pub(super) fn url_param(input: &Val, name: &Val) -> ValR<Val> {
    let name = str_arg(name, "url_param", "the parameter name")?;
    if is_null(input) {
        return Ok(Val::Null);
    }
    let text = str_arg(input, "url_param", "the input")?;
    let value = form_urlencoded::parse(query_of(text).as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned());
    Ok(value.map_or(Val::Null, Val::from))
}

#[cfg(test)]
mod tests {
    use super::super::expr::tests::{one, run};
    use super::super::expr::{Bindings, Expr, Input, Limits};
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
        for input in [
            "0912 345 678",
            "+84912345678",
            "84912345678",
            "0912345678",
            "0912.345.678",
            "091-234-5678",
            "+84 912 345 678",
        ] {
            let got = one(
                r#"[phone("VN"; "e164", "national", "national_no_zero")]"#,
                json!(input),
            );
            assert_eq!(
                got,
                json!(["+84912345678", "0912345678", "912345678"]),
                "{input}"
            );
        }
        let iran = one(
            r#"[phone("IR"; "e164", "national", "national_no_zero")]"#,
            json!("0912 123 4567"),
        );
        assert_eq!(iran, json!(["+989121234567", "09121234567", "9121234567"]));
        assert_eq!(
            one(r#"phone("vn"; "national")"#, json!("0989123456")),
            json!("0989123456")
        );
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
}
