//! The log: lines on stderr (stdout is the CLI's output), text or one JSON object a line, with
//! the buyers' phone numbers and e-mail addresses masked in every line, whatever wrote it
//! (a field, a message, a destination's answer quoted in a reason).

use std::borrow::Cow;
use std::io::{IsTerminal as _, Write};
use std::sync::LazyLock;

use regex::Regex;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The log thread's write buffer: about a hundred lines.
const LOG_BUFFER_BYTES: usize = 32 * 1024;

/// Starts logging: `RUST_LOG` filters (default `info`), `STOREHOOK_LOG_FORMAT=json` writes one
/// JSON object a line. Lines are written by a background thread, so a request never waits on
/// a write to stderr; when that thread falls behind, logging waits rather than dropping lines.
/// The thread writes whatever lines are waiting in one write, not one write each (it flushes
/// its buffer each time no more lines are waiting, so a line is never held back): under load,
/// a line per webhook was a system call per webhook. Hold the guard until the end: lines
/// still waiting are written when it drops.
pub fn init() -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::BufWriter::with_capacity(
            LOG_BUFFER_BYTES,
            std::io::stderr(),
        ));
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rusqlite_migration=warn,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(Masked(writer));
    if std::env::var("STOREHOOK_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
    guard
}

/// A writer of whole log lines that masks personal data in each before passing it on (the
/// formatter writes each line in one `write_all`).
#[derive(Clone)]
struct Masked<W>(W);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Masked<M> {
    type Writer = Masked<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        Masked(self.0.make_writer())
    }
}

impl<W: Write> Write for Masked<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(mask_personal_data(text).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// An e-mail address: its local part's first character, the rest of it, the domain.
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"([\p{L}\p{N}])[\p{L}\p{N}._%+-]*@([\p{L}\p{N}-]+(?:\.[\p{L}\p{N}-]+)+)")
        .expect("a valid pattern")
});

/// A phone number as shops and buyers type them: `+` and a country code, or a trunk zero,
/// then 8 to 14 more digits (ASCII, Persian or Arabic-Indic), maybe split by spaces, dots or
/// dashes. An id, an amount or a time never starts with `+` or `0` followed by a digit.
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\+|\b[0۰٠])[0-9۰-۹٠-٩](?:[ .-]?[0-9۰-۹٠-٩]){7,13}").expect("a valid pattern")
});

/// The value of a JSON field whose name says it holds a phone (`phone`, `billing_phone`,
/// `mobile`, `tel`) or Legion's `username` (the buyer's phone without its trunk zero), also
/// inside a JSON text quoted in a log field (`\"phone\":\"…\"`).
static PHONE_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)(\\?"[\w-]*(?:phone|mobile|tel|username)[\w-]*\\?"\s*:\s*\\?")([^"\\]+)"#)
        .expect("a valid pattern")
});

/// `text` with each phone number kept to its first and last two digits (`09******56`) and
/// each e-mail address to the first character of its local part and its domain
/// (`m***@example.vn`).
pub fn mask_personal_data(text: &str) -> Cow<'_, str> {
    let mut text = EMAIL.replace_all(text, "$1***@$2");
    if let Cow::Owned(masked) = PHONE_FIELD.replace_all(&text, |found: &regex::Captures| {
        format!("{}{}", &found[1], mask_phone(&found[2]))
    }) {
        text = Cow::Owned(masked);
    }
    if let Cow::Owned(masked) =
        PHONE.replace_all(&text, |found: &regex::Captures| mask_phone(&found[0]))
    {
        text = Cow::Owned(masked);
    }
    text
}

/// A phone's `+` and digits, all but the first and last two as `*` (all of them when it has
/// fewer than six).
fn mask_phone(phone: &str) -> String {
    let kept: Vec<char> = phone
        .chars()
        .filter(|c| c.is_numeric() || *c == '+')
        .collect();
    let keep = if kept.len() >= 6 { 2 } else { 0 };
    let mut masked: String = kept[..keep].iter().collect();
    masked.extend(std::iter::repeat_n('*', kept.len() - 2 * keep));
    masked.extend(&kept[kept.len() - keep..]);
    masked
}

#[cfg(test)]
mod tests {
    use super::mask_personal_data as mask;

    #[test]
    fn phones_keep_their_first_and_last_two_digits() {
        assert_eq!(mask("phone=0912345656"), "phone=09******56");
        assert_eq!(mask("call +84 987 654 321 now"), "call +8********21 now");
        assert_eq!(
            mask(r#"{"phone":"0912.345.678"}"#),
            r#"{"phone":"09******78"}"#
        );
        assert_eq!(mask("۰۹۱۲۳۴۵۶۷۸۹"), "۰۹*******۸۹");
        assert_eq!(mask("+1 650-253-0000"), "+1********00");
        assert_eq!(
            mask(
                r#"reason="HTTP 422: {\"username\":\"987654321\",\"billing_phone\":\"(028) 3822\"}""#
            ),
            r#"reason="HTTP 422: {\"username\":\"98*****21\",\"billing_phone\":\"02***22\"}""#
        );
    }

    #[test]
    fn emails_keep_the_first_character_and_the_domain() {
        assert_eq!(mask("email=minh@example.vn"), "email=m***@example.vn");
        assert_eq!(
            mask(r#"{"email":"nguyen.van.an+shop@mail.example.com"}"#),
            r#"{"email":"n***@mail.example.com"}"#
        );
        assert_eq!(mask("trần@ví-dụ.vn"), "t***@ví-dụ.vn");
    }

    #[test]
    fn ids_amounts_times_and_addresses_stay() {
        for text in [
            "webhook_id=1071234501 order 100245 total 1110000",
            "2026-03-12T02:15:40.1Z took 0.25 s",
            "address=127.0.0.1:8080",
            "delivery 12 haravan/1071234501 attempt 3",
            "id=c1ee9a29-d5ce-511b-8ec5-3616653fe89c",
        ] {
            assert_eq!(mask(text), text);
        }
    }
}
