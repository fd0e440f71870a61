//! The builtins replaced for the guard rails and for speed: `join` as a native, `range/3`
//! drawing on a per-evaluation budget, and `fromjson` refusing deep nesting.

use std::cell::Cell;

use jaq_core::box_iter::{BoxIter, box_once};
use jaq_core::{Error, Exn, ValR, ValX};
use jaq_json::Val;
use jaq_std::ValT;

use super::{fail, is_null, str_arg};

/// jq's `join`: null joins as `""`, numbers and booleans as their text.
pub(in crate::mapping) fn join(items: Val, separator: &Val) -> ValR<Val> {
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

pub(in crate::mapping) fn set_range_budget(values: u64) {
    RANGE_BUDGET.with(|b| b.set(values));
}

/// jaq-core's `range/3`, drawing one unit of the budget per value.
pub(super) fn budgeted_range<'a, V: ValT + 'a>(
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
pub(super) fn fromjson<'a>(v: &Val) -> BoxIter<'a, ValX<'a, Val>> {
    let Some(text) = v.as_utf8_bytes() else {
        return box_once(Err(Exn::from(Error::typ(v.clone(), "string"))));
    };
    let values: Vec<_> = serde_json::Deserializer::from_slice(text)
        .into_iter::<Val>()
        .map(|r| r.map_err(|e| Exn::from(Error::str(format!("fromjson: not JSON: {e}")))))
        .collect();
    Box::new(values.into_iter())
}
