//! `money` and `money_sum`: amounts as exact decimals, whatever form the storefront writes
//! them in.

use jaq_core::{Error, ValR};
use jaq_json::{Num, Val};
use jaq_std::ValT;
use rust_decimal::Decimal;

use super::{as_str, fail};

/// Whole floats below this (2⁵³) are integers exactly.
const MAX_EXACT_WHOLE_FLOAT: f64 = 9_007_199_254_740_992.0;

/// The exact decimal a money value stands for; `None` for null and blank strings.
pub(super) fn decimal(v: &Val) -> Result<Option<Decimal>, Error<Val>> {
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
pub(super) fn from_decimal(d: Decimal) -> ValR<Val> {
    let d = d.normalize();
    if d.scale() == 0
        && let Some(whole) = rust_decimal::prelude::ToPrimitive::to_i64(&d)
        && let Ok(whole) = isize::try_from(whole)
    {
        return Ok(Val::from(whole));
    }
    <Val as jaq_core::ValT>::from_num(&d.to_string())
}

pub(in crate::mapping) fn money(v: &Val) -> ValR<Val> {
    match decimal(v)? {
        Some(d) => from_decimal(d),
        None => Ok(Val::Null),
    }
}

pub(in crate::mapping) fn money_sum(v: Val) -> ValR<Val> {
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
