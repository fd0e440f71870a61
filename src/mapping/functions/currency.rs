//! `currency_rate(from; to)` and `in_currency(amount; from; to)`: an amount of one currency
//! in another, where the rate between them is exact, rounded once to the unit `to` counts in;
//! and `allocate(amount; currency)`: an amount split over parts in proportion, to the unit.
//!
//! The one rule for every mapping: an amount in the same currency is taken as it is; between
//! the Iranian units it is converted exactly (1 IRT = 10 IRR, 1 IRHT = 1,000 IRT, 1 IRHR =
//! 1,000 IRR); between any other two there is no rate (storehook knows no exchange rates),
//! and a mapping skips the order instead. Amounts are rounded half away from zero to the
//! target's unit: none for VND, IRR and IRT, three decimals for IRHT and IRHR (so that no
//! toman or rial is lost), and ISO 4217's minor unit for any other currency.

use jaq_core::ValR;
use jaq_json::Val;
use rust_decimal::{Decimal, RoundingStrategy};

use super::money::{decimal, from_decimal};
use super::{as_str, fail};

/// The Iranian units shops use, most not ISO codes: how many rials each is, and the
/// decimals an amount of it keeps. The rial has minor units in ISO 4217, none in use.
const IRANIAN: [(&str, i64, u32); 4] = [
    ("IRR", 1, 0),
    ("IRT", 10, 0),
    ("IRHR", 1_000, 3),
    ("IRHT", 10_000, 3),
];

/// A currency code as shops write it: trimmed, upper case; `None` for anything but text.
fn code(v: &Val) -> Option<String> {
    as_str(v)
        .map(|text| text.trim().to_ascii_uppercase())
        .filter(|code| !code.is_empty())
}

fn iranian(code: &str) -> Option<(i64, u32)> {
    IRANIAN
        .iter()
        .find(|(name, ..)| *name == code)
        .map(|&(_, rials, decimals)| (rials, decimals))
}

/// The exact factor from `from` to `to`, if there is one.
fn rate(from: &str, to: &str) -> Option<Decimal> {
    if from == to {
        return Some(Decimal::ONE);
    }
    let (from, _) = iranian(from)?;
    let (to, _) = iranian(to)?;
    Some(Decimal::from(from) / Decimal::from(to))
}

/// The decimals an amount of `code` is rounded to.
fn decimals(code: &str) -> u32 {
    if let Some((_, decimals)) = iranian(code) {
        return decimals;
    }
    iso_currency::Currency::from_code(code)
        .and_then(|currency| currency.exponent())
        .map_or(2, u32::from)
}

/// `amount` split over the input's weights (an array of amounts) in proportion, each share
/// rounded half away from zero to `currency`'s unit and the rounding remainder put on the
/// last share, so that the shares add up to `amount` exactly. With weights that add up to
/// zero, the last share takes it all.
pub(in crate::mapping) fn allocate(weights: &Val, amount: &Val, currency: &Val) -> ValR<Val> {
    let items = match weights {
        Val::Arr(items) => items,
        other => {
            return Err(fail(format!(
                "allocate: expects an array of amounts, got {other}"
            )));
        }
    };
    let amount = decimal(amount)?.unwrap_or(Decimal::ZERO);
    let currency = code(currency).ok_or_else(|| {
        fail(format!(
            "allocate: the currency must be a code, got {currency}"
        ))
    })?;
    let weights = items
        .iter()
        .map(|w| Ok(decimal(w)?.unwrap_or(Decimal::ZERO)))
        .collect::<Result<Vec<Decimal>, _>>()?;
    let total: Decimal = weights.iter().sum();
    let overflow = || fail(format!("allocate: {amount} over {total} overflows"));
    let mut shares = Vec::with_capacity(weights.len());
    let mut given = Decimal::ZERO;
    for (i, weight) in weights.iter().enumerate() {
        let share = if i + 1 == weights.len() {
            amount - given
        } else if total.is_zero() {
            Decimal::ZERO
        } else {
            let exact = amount
                .checked_mul(*weight)
                .and_then(|product| product.checked_div(total))
                .ok_or_else(overflow)?;
            exact
                .round_dp_with_strategy(decimals(&currency), RoundingStrategy::MidpointAwayFromZero)
        };
        given += share;
        shares.push(from_decimal(share)?);
    }
    Ok(shares.into_iter().collect())
}

/// The factor from `from` to `to` as a number, or `null` when there is no exact one.
pub(in crate::mapping) fn currency_rate(from: &Val, to: &Val) -> ValR<Val> {
    match code(from).zip(code(to)).and_then(|(f, t)| rate(&f, &t)) {
        Some(rate) => from_decimal(rate),
        None => Ok(Val::Null),
    }
}

/// `amount` (as `money` reads it) of `from` in `to`, rounded to `to`'s unit; `null` for no
/// amount, an error when there is no exact rate.
pub(in crate::mapping) fn in_currency(amount: &Val, from: &Val, to: &Val) -> ValR<Val> {
    let Some(amount) = decimal(amount)? else {
        return Ok(Val::Null);
    };
    let (Some(from_code), Some(to_code)) = (code(from), code(to)) else {
        return Err(fail(format!(
            "in_currency: the currencies must be codes, got {from} and {to}"
        )));
    };
    let rate = rate(&from_code, &to_code).ok_or_else(|| {
        fail(format!(
            "in_currency: no exact rate from {from_code} to {to_code} (skip such orders: see currency_rate)"
        ))
    })?;
    let converted = amount
        .checked_mul(rate)
        .ok_or_else(|| fail(format!("in_currency: {amount} {from_code} overflows")))?;
    from_decimal(
        converted
            .round_dp_with_strategy(decimals(&to_code), RoundingStrategy::MidpointAwayFromZero),
    )
}
