//! `local_time(zone; format)`, `epoch_ms` and `in_zone(zone)`: the timestamps storefronts
//! send, in a time zone, as epoch milliseconds, or read on a shop's own clock.

use jaq_core::{Error, ValR};
use jaq_json::{Num, Val};

use super::{as_str, fail, is_null, str_arg};

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

pub(in crate::mapping) fn local_time(input: &Val, zone: &Val, format: &Val) -> ValR<Val> {
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

/// A timestamp without a zone read as a civil time in `zone` (a shop's own clock: the
/// WooCommerce dates without `_gmt`), written as RFC 3339 with its offset; one that has a
/// zone or an offset is given back as it is, and `null` stays `null`.
pub(in crate::mapping) fn in_zone(input: &Val, zone: &Val) -> ValR<Val> {
    let zone = str_arg(zone, "in_zone", "the time zone")?;
    let tz = jiff::tz::TimeZone::get(zone)
        .map_err(|_| fail(format!("in_zone: unknown time zone `{zone}`")))?;
    if is_null(input) {
        return Ok(Val::Null);
    }
    let unreadable = || fail(format!("in_zone: cannot read {input} as a timestamp"));
    let text = as_str(input).ok_or_else(unreadable)?.trim();
    if text.parse::<jiff::Timestamp>().is_ok() {
        return Ok(input.clone());
    }
    let civil = text
        .parse::<jiff::civil::DateTime>()
        .map_err(|_| unreadable())?;
    let zoned = civil.to_zoned_datetime(tz).map_err(|_| unreadable())?;
    Ok(Val::from(
        zoned
            .timestamp()
            .display_with_offset(zoned.offset())
            .to_string(),
    ))
}

pub(in crate::mapping) fn epoch_ms(input: &Val) -> ValR<Val> {
    match timestamp(input, "epoch_ms")? {
        Some(ts) => Ok(Val::Num(Num::from_integral(ts.as_millisecond()))),
        None => Ok(Val::Null),
    }
}
