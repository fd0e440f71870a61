//! `phone(region; format)`: a phone number read in any common form and written in one of
//! three, the numbers parsed remembered per thread.

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
