//! `phone(region; format)`: a phone number read in any common form and written in one of
//! three, the numbers parsed remembered per thread.
//!
//! Shops type numbers as they like: with spaces, dots or dashes, with the country code
//! (`+84…`, `0084…`, `84…`) or without, with the trunk zero or without, and in Persian
//! (`۰۹۱۲…`) or Arabic-Indic digits, which are read as the digits they are. A number of
//! another country than `region` keeps its country in `e164`, and has no national form in
//! `region`: `national` and `national_no_zero` give `null` for it rather than a national
//! number that belongs to nobody there.

use std::str::FromStr;

use jaq_core::ValR;
use jaq_json::Val;

use super::{as_str, fail, str_arg};

/// Phone inputs longer than this are not phone numbers: `null`, without parsing.
const MAX_PHONE_CHARS: usize = 64;

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
pub(in crate::mapping) fn load_phone_metadata() {
    let _ = parse_phone(phonenumber::country::Id::VN, "0912345678");
}

pub(in crate::mapping) fn phone(input: &Val, region: &Val, format: &Val) -> ValR<Val> {
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
    let text = &*ascii_digits(text);
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
        let abroad = number.country().id() != Some(region);
        if abroad && PHONE_FORMATS[format] != "e164" {
            return None;
        }
        Some(
            formats[format]
                .get_or_insert_with(|| format_phone(number, PHONE_FORMATS[format]))
                .clone(),
        )
    });
    Ok(formatted.map_or(Val::Null, Val::from))
}

/// `text` with Persian (U+06F0–U+06F9) and Arabic-Indic (U+0660–U+0669) digits written as
/// ASCII digits; borrowed when it has none.
fn ascii_digits(text: &str) -> std::borrow::Cow<'_, str> {
    let ascii = |c: char| match c {
        '\u{06F0}'..='\u{06F9}' => char::from_digit(c as u32 - 0x06F0, 10),
        '\u{0660}'..='\u{0669}' => char::from_digit(c as u32 - 0x0660, 10),
        _ => None,
    };
    if text.chars().any(|c| ascii(c).is_some()) {
        text.chars().map(|c| ascii(c).unwrap_or(c)).collect()
    } else {
        text.into()
    }
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
