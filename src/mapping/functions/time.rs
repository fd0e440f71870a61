//! `local_time(zone; format)` and `epoch_ms`: the timestamps storefronts send, in a time zone
//! or as epoch milliseconds.

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

pub(in crate::mapping) fn epoch_ms(input: &Val) -> ValR<Val> {
    match timestamp(input, "epoch_ms")? {
        Some(ts) => Ok(Val::Num(Num::from_integral(ts.as_millisecond()))),
        None => Ok(Val::Null),
    }
}
