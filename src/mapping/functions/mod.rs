//! The functions mapping expressions have beyond standard jq: `uuid5`, `phone`, `money`,
//! `money_sum`, `currency_rate`, `in_currency`, `allocate`, `local_time`, `in_zone`, `epoch_ms`, `url_param`, `attr`, `first_of`; and the builtins
//! [`super::expr`] replaces ([`REPLACED`]): `range/3` drawing on a per-evaluation budget,
//! `fromjson` refusing deep nesting, and faster `null`, `empty` and `join`; and jq builtins
//! jaq lacks ([`DEFS`]: `IN`, `INDEX`, `toarray`).
//!
//! Natives are generic over the data type `D`, the way jaq-std writes its own; those that need
//! jaq-json's `Val` fix `D::V` to it as jaq-json does, and then `run::<D>` must be named, or
//! the function-pointer coercion fails with E0631.

use jaq_core::box_iter::box_once;
use jaq_core::native::{Filter, Fun, bome, run, v};
use jaq_core::{DataT, Error, Native, RunPtr};
use jaq_json::Val;
use jaq_std::ValT;

mod builtins;
mod currency;
mod money;
mod order;
mod phone;
#[cfg(test)]
mod tests;
mod time;

use builtins::{budgeted_range, fromjson};
pub(super) use builtins::{join, set_range_budget};
pub(super) use currency::{allocate, currency_rate, in_currency};
pub(super) use money::{money, money_sum};
pub(super) use order::{attr, first_of, url_param, uuid5};
pub(super) use phone::{load_phone_metadata, phone};
pub(super) use time::{epoch_ms, in_zone, local_time};

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
        ("currency_rate", v(2), |mut cv| {
            let to = cv.0.pop_var();
            let from = cv.0.pop_var();
            bome(currency_rate(&from, &to))
        }),
        ("allocate", v(2), |mut cv| {
            let currency = cv.0.pop_var();
            let amount = cv.0.pop_var();
            bome(allocate(&cv.1, &amount, &currency))
        }),
        ("in_currency", v(3), |mut cv| {
            let to = cv.0.pop_var();
            let from = cv.0.pop_var();
            let amount = cv.0.pop_var();
            bome(in_currency(&amount, &from, &to))
        }),
        ("local_time", v(2), |mut cv| {
            let format = cv.0.pop_var();
            let zone = cv.0.pop_var();
            bome(local_time(&cv.1, &zone, &format))
        }),
        ("epoch_ms", v(0), |cv| bome(epoch_ms(&cv.1))),
        ("in_zone", v(1), |mut cv| {
            let zone = cv.0.pop_var();
            bome(in_zone(&cv.1, &zone))
        }),
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

pub(super) fn is_null(v: &Val) -> bool {
    matches!(v, Val::Null)
}

pub(super) fn as_str(v: &Val) -> Option<&str> {
    v.as_utf8_bytes().and_then(|b| std::str::from_utf8(b).ok())
}

pub(super) fn fail(message: String) -> Error<Val> {
    Error::str(message)
}

/// A string argument, or an error naming the function and the argument.
pub(super) fn str_arg<'v>(v: &'v Val, function: &str, what: &str) -> Result<&'v str, Error<Val>> {
    as_str(v).ok_or_else(|| fail(format!("{function}: {what} must be a string, got {v}")))
}

/// `.[key]` of an object, or `None` when it is null or not there (or `v` is no object).
pub(super) fn field<'v>(v: &'v Val, key: &'static str) -> Option<&'v Val> {
    let Val::Obj(object) = v else {
        return None;
    };
    // a static key's bytes are borrowed, not copied
    let key = Val::utf8_str(key.as_bytes());
    object.get(&key).filter(|value| !is_null(value))
}
