//! The projected parse's fast path: a JSON reader over the body's bytes that builds what a
//! [`Demand`] reads and skips the rest, checking it as JSON.
//!
//! It reads the common body: compact or pretty JSON whose keys have no escapes. Whatever it
//! does not read exactly as serde_json does (an escaped key, a `\u` surrogate, an integer
//! beyond 64 bits or `-0`, a float out of range, nesting deeper than [`MAX_DEPTH`]) and any
//! invalid JSON make it give up (`None`), and the serde_json parse of [`super::project`]
//! decides. So whatever this accepts, serde_json accepts with the same value, and the error
//! an invalid body gets is serde_json's.
//!
//! Why: through serde_json's visitor the projected parse cost about 500 instructions per
//! key of a 5 KB Haravan order, most of it passing over keys and values nobody reads;
//! here a byte loop passes over them.

use bytes::Bytes;
use jaq_json::{Num, Val};

use super::demand::Demand;

/// Deepest nesting built here; deeper is left to serde_json (which refuses more than 128).
/// Parts skipped are checked without recursion, at any depth.
const MAX_DEPTH: usize = 100;

/// The value of JSON `bytes` with only what `demand` reads built; `None` when the body is
/// not JSON or is beyond this reader (see the module's doc).
pub(super) fn parse(bytes: &[u8], demand: &Demand) -> Option<Val> {
    // One copy of the body, which every string built is a slice of: a string then costs no
    // allocation of its own bytes nor copy of them, and cloning it later (the evaluator clones
    // the values it passes on) only counts a reference, where a string made from its own
    // `Vec` was given a shared header on its first clone.
    let body = Bytes::copy_from_slice(bytes);
    let mut reader = Reader::new(&body);
    reader.body = Some(&body);
    let first = reader.next_token()?;
    let value = reader.value(first, Want::of(demand), 0)?;
    reader.at_end().then_some(value)
}

/// The JSON text of every occurrence, in order, of the top-level fields of `bytes` named in
/// `names` (by index in `names`), the rest of the body checked as JSON; nothing in an array.
/// `None` when the body is not JSON or is beyond this reader (an escaped key, say), and for
/// a body that is one scalar, which serde_json reads whole (a number out of range, a lone
/// surrogate are refused there). The caller reads each occurrence's text.
pub(crate) fn top_level_fields<'b>(
    bytes: &'b [u8],
    names: &[&str],
) -> Option<Vec<(usize, &'b [u8])>> {
    let mut reader = Reader::new(bytes);
    let mut fields: Vec<(usize, &[u8])> = Vec::new();
    match reader.next_token()? {
        b'{' => reader.members(|reader, key, first| {
            let start = reader.at - 1;
            reader.skip(first)?;
            if let Some(index) = names.iter().position(|name| name.as_bytes() == key) {
                fields.push((index, &bytes[start..reader.at]));
            }
            Some(())
        })?,
        b'[' => reader.skip(b'[')?,
        _ => return None,
    }
    reader.at_end().then_some(fields)
}

/// What is built of a value.
#[derive(Clone, Copy)]
enum Want<'d> {
    Whole,
    Part(&'d Demand),
}

impl<'d> Want<'d> {
    fn of(demand: &'d Demand) -> Want<'d> {
        if demand.whole {
            Want::Whole
        } else {
            Want::Part(demand)
        }
    }

    /// What is built of the field `key` of an object, if anything.
    fn field(self, key: &[u8]) -> Option<Want<'d>> {
        match self {
            Want::Whole => Some(Want::Whole),
            Want::Part(demand) => demand.field(key).map(Want::of),
        }
    }

    /// What is built of every element of an array, if anything.
    fn each(self) -> Option<Want<'d>> {
        match self {
            Want::Whole => Some(Want::Whole),
            Want::Part(demand) => demand.each.as_deref().map(Want::of),
        }
    }
}

/// Whether a byte ends a run of plain string bytes: the quote, the backslash, and the
/// control characters JSON does not allow in a string.
fn is_string_stop(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// The offset in `bytes` of the first byte that ends a run of plain string bytes, looked
/// for eight bytes at a time (as serde_json does): in a word, a byte below 0x20, or equal
/// to the quote or the backslash, sets its high bit in the mask; the lowest set bit is the
/// first such byte (a borrow only marks bytes above one that is).
#[inline(always)]
fn string_stop(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = ONES << 7;
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let control = word.wrapping_sub(ONES * 0x20) & !word;
        let quote = word ^ (ONES * u64::from(b'"'));
        let quote = quote.wrapping_sub(ONES) & !quote;
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let backslash = backslash.wrapping_sub(ONES) & !backslash;
        let found = (control | quote | backslash) & HIGHS;
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes[at..]
        .iter()
        .position(|&b| is_string_stop(b))
        .map(|offset| at + offset)
}

struct Reader<'a> {
    bytes: &'a [u8],
    /// `bytes` as shared bytes, when the strings built are slices of them.
    body: Option<&'a Bytes>,
    at: usize,
    /// The closing brackets of the containers being skipped (reused between skips).
    closers: Vec<u8>,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader {
            bytes,
            body: None,
            at: 0,
            closers: Vec::new(),
        }
    }

    /// Whether only whitespace is left.
    fn at_end(&mut self) -> bool {
        self.skip_whitespace();
        self.at == self.bytes.len()
    }

    /// After an object's `{` (consumed), through its `}`: each member's key (without
    /// escapes, else `None`) and the first byte of its value (consumed) to `member`, which
    /// reads the rest of the value.
    #[inline(always)]
    fn members(
        &mut self,
        mut member: impl FnMut(&mut Self, &'a [u8], u8) -> Option<()>,
    ) -> Option<()> {
        match self.next_token()? {
            b'}' => return Some(()),
            b'"' => {}
            _ => return None,
        }
        loop {
            let (key, escaped) = self.string()?;
            if escaped || self.next_token()? != b':' {
                return None;
            }
            let first = self.next_token()?;
            member(self, key, first)?;
            match self.next_token()? {
                b',' if self.next_token()? == b'"' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    #[inline(always)]
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after whitespace, consumed.
    #[inline(always)]
    fn next_token(&mut self) -> Option<u8> {
        self.skip_whitespace();
        let byte = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    /// The value that begins with `first` (consumed).
    fn value(&mut self, first: u8, want: Want, depth: usize) -> Option<Val> {
        match first {
            b'{' if depth < MAX_DEPTH => self.object(want, depth),
            b'[' if depth < MAX_DEPTH => self.array(want, depth),
            b'"' => {
                let (raw, escaped) = self.string()?;
                if escaped {
                    let bytes = unescape(raw)?;
                    std::str::from_utf8(&bytes).ok()?;
                    return Some(Val::utf8_str(bytes));
                }
                self.text(raw)
            }
            b'-' | b'0'..=b'9' => self.number(first),
            b't' => self.literal(b"rue", Val::Bool(true)),
            b'f' => self.literal(b"alse", Val::Bool(false)),
            b'n' => self.literal(b"ull", Val::Null),
            _ => None,
        }
    }

    fn object(&mut self, want: Want, depth: usize) -> Option<Val> {
        let mut object = jaq_json::Map::default();
        self.members(|reader, key, first| {
            match want.field(key) {
                Some(field) => {
                    let value = reader.value(first, field, depth + 1)?;
                    object.insert(reader.text(key)?, value);
                }
                None => reader.skip(first)?,
            }
            Some(())
        })?;
        Some(Val::obj(object))
    }

    fn array(&mut self, want: Want, depth: usize) -> Option<Val> {
        let each = want.each();
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.bytes.get(self.at) == Some(&b']') {
            self.at += 1;
            return Some(items.into_iter().collect());
        }
        loop {
            let first = self.next_token()?;
            match each {
                Some(each) => items.push(self.value(first, each, depth + 1)?),
                None => self.skip(first)?,
            }
            match self.next_token()? {
                b',' => {}
                b']' => return Some(items.into_iter().collect()),
                _ => return None,
            }
        }
    }

    /// A string without escapes, `raw` a part of `bytes` between quotes: `None` if it is
    /// not UTF-8.
    fn text(&self, raw: &'a [u8]) -> Option<Val> {
        std::str::from_utf8(raw).ok()?;
        Some(match self.body {
            Some(body) => Val::utf8_str(body.slice_ref(raw)),
            None => Val::utf8_str(raw.to_vec()),
        })
    }

    /// After the opening quote: the string's bytes as written, up to the closing quote
    /// (consumed), and whether they hold escapes. Checks the escapes' form and refuses
    /// control characters, as serde_json does; not the UTF-8 (nor does serde_json, for a
    /// string it skips).
    #[inline(always)]
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        let bytes = self.bytes;
        let start = self.at;
        let mut escaped = false;
        loop {
            self.at += string_stop(&bytes[self.at..])?;
            match bytes[self.at] {
                b'"' => {
                    self.at += 1;
                    return Some((&bytes[start..self.at - 1], escaped));
                }
                b'\\' => {
                    escaped = true;
                    match *bytes.get(self.at + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 2,
                        b'u' => {
                            let hex = bytes.get(self.at + 2..self.at + 6)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.at += 6;
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    /// The end of the number that begins with `first` (consumed), checked against JSON's
    /// grammar; whether it has a fraction or an exponent.
    fn number_end(&mut self, first: u8) -> Option<bool> {
        let bytes = self.bytes;
        let digits = |at: &mut usize| {
            let start = *at;
            while bytes.get(*at).is_some_and(u8::is_ascii_digit) {
                *at += 1;
            }
            *at > start
        };
        let mut at = self.at;
        let lead = if first == b'-' {
            let lead = *bytes.get(at)?;
            at += 1;
            lead
        } else {
            first
        };
        match lead {
            b'0' => {}
            b'1'..=b'9' => {
                digits(&mut at);
            }
            _ => return None,
        }
        let mut float = false;
        if bytes.get(at) == Some(&b'.') {
            at += 1;
            if !digits(&mut at) {
                return None;
            }
            float = true;
        }
        if let Some(b'e' | b'E') = bytes.get(at) {
            at += 1;
            if let Some(b'+' | b'-') = bytes.get(at) {
                at += 1;
            }
            if !digits(&mut at) {
                return None;
            }
            float = true;
        }
        self.at = at;
        Some(float)
    }

    /// The number that begins with `first` (consumed), valued as serde_json values it:
    /// an integer as `u64` or (negative) `i64`, anything else as the nearest `f64`.
    fn number(&mut self, first: u8) -> Option<Val> {
        let start = self.at - 1;
        let float = self.number_end(first)?;
        let text = &self.bytes[start..self.at];
        if float {
            // serde_json's own float parsing, so the value is the same to the last bit
            let value: f64 = serde_json::from_slice(text).ok()?;
            return Some(Val::Num(Num::Float(value)));
        }
        let (negative, digits) = match text {
            [b'-', digits @ ..] => (true, digits),
            digits => (false, digits),
        };
        // beyond a u64, serde_json reads a float: left to it
        let magnitude = digits.iter().try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })?;
        if !negative {
            return Some(Val::Num(Num::from_integral(magnitude)));
        }
        // serde_json reads `-0` as a float, and beyond i64 as a float too
        if magnitude == 0 || magnitude > 1 << 63 {
            return None;
        }
        let value = (magnitude as i64).wrapping_neg();
        Some(Val::Num(Num::from_integral(value)))
    }

    /// The rest of `true`, `false` or `null`.
    fn literal(&mut self, rest: &[u8], value: Val) -> Option<Val> {
        if self.bytes.get(self.at..self.at + rest.len())? != rest {
            return None;
        }
        self.at += rest.len();
        Some(value)
    }

    /// Passes over the value that begins with `first` (consumed), checking it as JSON,
    /// without recursion.
    #[inline(always)]
    fn skip(&mut self, first: u8) -> Option<()> {
        match first {
            b'"' => self.string().map(drop),
            b'{' | b'[' => self.skip_container(first),
            _ => self.skip_scalar(first),
        }
    }

    /// Passes over the number, `true`, `false` or `null` that begins with `first`.
    fn skip_scalar(&mut self, first: u8) -> Option<()> {
        match first {
            b'-' | b'0'..=b'9' => self.number_end(first).map(drop),
            b't' => self.literal(b"rue", Val::Null).map(drop),
            b'f' => self.literal(b"alse", Val::Null).map(drop),
            b'n' => self.literal(b"ull", Val::Null).map(drop),
            _ => None,
        }
    }

    /// [`Reader::skip`] for a container (`first` is its opening bracket).
    fn skip_container(&mut self, first: u8) -> Option<()> {
        self.closers.clear();
        let mut first = first;
        loop {
            // one value, or the opening of a container
            match first {
                b'{' => match self.next_token()? {
                    b'}' => {}
                    b'"' => {
                        self.string()?;
                        if self.next_token()? != b':' {
                            return None;
                        }
                        self.closers.push(b'}');
                        first = self.next_token()?;
                        continue;
                    }
                    _ => return None,
                },
                b'[' => {
                    self.skip_whitespace();
                    if self.bytes.get(self.at) == Some(&b']') {
                        self.at += 1;
                    } else {
                        self.closers.push(b']');
                        first = self.next_token()?;
                        continue;
                    }
                }
                b'"' => {
                    self.string()?;
                }
                _ => self.skip_scalar(first)?,
            }
            // a value ended: close the containers it ends, or go on to the next value
            loop {
                let Some(&closer) = self.closers.last() else {
                    return Some(());
                };
                match self.next_token()? {
                    b',' => {
                        if closer == b'}' {
                            if self.next_token()? != b'"' {
                                return None;
                            }
                            self.string()?;
                            if self.next_token()? != b':' {
                                return None;
                            }
                        }
                        first = self.next_token()?;
                        break;
                    }
                    byte if byte == closer => {
                        self.closers.pop();
                    }
                    _ => return None,
                }
            }
        }
    }
}

/// A string's bytes with its escapes (checked by [`Reader::string`]) decoded; `None` for a
/// `\u` escape of a surrogate, which serde_json pairs (or refuses) its own way.
fn unescape(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    while let Some(offset) = raw[at..].iter().position(|&b| b == b'\\') {
        out.extend_from_slice(&raw[at..at + offset]);
        at += offset;
        let decoded = match raw[at + 1] {
            b'b' => b'\x08',
            b'f' => b'\x0c',
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let hex = std::str::from_utf8(&raw[at + 2..at + 6]).ok()?;
                let c = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                at += 6;
                continue;
            }
            other => other,
        };
        out.push(decoded);
        at += 2;
    }
    out.extend_from_slice(&raw[at..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::super::project::parse_projected_serde;
    use super::super::{Catalog, Demand, expr::Expr};
    use crate::domain::PlatformKind;

    /// What `.`-paths of these read, finished as the catalog finishes a route's demand.
    fn demand(code: &str) -> Demand {
        Demand::default().finished_with(Expr::compile(code).unwrap().demand())
    }

    /// The fast reader's answer and serde_json's, as JSON text (so `1` and `1.0` differ).
    fn both(bytes: &[u8], demand: &Demand) -> (Option<String>, Result<String, String>) {
        let fast = super::parse(bytes, demand).map(|v| v.to_string());
        let serde = parse_projected_serde(bytes, demand)
            .map(|v| v.to_string())
            .map_err(|e| e.to_string());
        (fast, serde)
    }

    #[test]
    fn top_level_fields_are_found_as_written_every_time_they_occur() {
        let body = br#" {"id": 1, "x": {"id": 2}, "u": "t", "id" : [3, {"y": 4}] } "#;
        let fields = super::top_level_fields(body, &["u", "id", "v"]).unwrap();
        let fields: Vec<(usize, &str)> = fields
            .into_iter()
            .map(|(i, raw)| (i, std::str::from_utf8(raw).unwrap()))
            .collect();
        assert_eq!(fields, [(1, "1"), (0, r#""t""#), (1, r#"[3, {"y": 4}]"#)]);
        for other in [&b"[1, {\"id\": 3}]"[..], b"{}"] {
            assert_eq!(super::top_level_fields(other, &["id"]), Some(vec![]));
        }
        for beyond in [
            &br#"{"\u0069d": 1}"#[..],
            br#"{"id": 1,}"#,
            br#"{"id": 1} x"#,
            b"",
            // a scalar body is serde_json's to read (1e999 is out of range there)
            b" 12 ",
            b"1e999",
        ] {
            assert_eq!(super::top_level_fields(beyond, &["id"]), None);
        }
    }

    #[test]
    fn string_stops_are_found_at_every_offset() {
        for stop in [b'"', b'\\', 0x00, 0x1f] {
            for len in 0..20 {
                for at in 0..len {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = stop;
                    // bytes that must not stop it, after and before
                    bytes.iter_mut().skip(at + 1).for_each(|b| *b = 0xff);
                    bytes.iter_mut().take(at).for_each(|b| *b = b' ');
                    assert_eq!(super::string_stop(&bytes), Some(at), "{bytes:?}");
                }
                let plain: Vec<u8> = (0..len)
                    .map(|i| [b'a', 0x20, 0x7f, 0xe9, b'#', b']'][i % 6])
                    .collect();
                assert_eq!(super::string_stop(&plain), None, "{plain:?}");
            }
        }
    }

    #[test]
    fn every_fixture_is_read_fast_as_serde_json_reads_it() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let catalog = Catalog::load(&root.join("mappings")).unwrap();
        let topics = [
            "orders/paid",
            "orders/create",
            "orders/updated",
            "orders/cancelled",
            "order.created",
            "order.updated",
        ];
        let mut read = 0;
        for platform in PlatformKind::ALL {
            let dir = root.join("fixtures").join(platform.as_str());
            for file in super::super::files_below(&dir, "json").unwrap() {
                let body = std::fs::read(&file).unwrap();
                for topic in topics {
                    let Some(demand) = catalog.demand(platform, topic) else {
                        continue;
                    };
                    let (fast, serde) = both(&body, demand);
                    assert_eq!(fast.as_ref(), serde.as_ref().ok(), "{}", file.display());
                    read += 1;
                }
            }
        }
        assert!(read >= 12, "{read} fixture bodies read");
    }

    #[test]
    fn values_are_built_as_serde_json_builds_them() {
        let body = br#" {"a" : [1, -2, 3.5, 1e2, -0.0, 18446744073709551615, true, null],
            "b": "t\u00e9\n\"x\"\\/\b\f\r\t", "c": {"d": [], "e": {}}, "z": [{"q": "\ud83d\ude00"}]} "#;
        let all = demand(".a, .b, .c");
        let (fast, serde) = both(body, &all);
        assert!(fast.is_some(), "read fast");
        assert_eq!(fast.as_ref(), serde.as_ref().ok());
        // what serde_json reads its own way is left to it: a surrogate pair read, a -0
        // integer, an integer beyond 64 bits, an escaped key
        for (body, code) in [
            (&br#"{"z": "\ud83d\ude00"}"#[..], ".z"),
            (br#"{"a": -0}"#, ".a"),
            (br#"{"a": 123456789012345678901}"#, ".a"),
            (br#"{"\u0061": 1}"#, ".a"),
        ] {
            let (fast, serde) = both(body, &demand(code));
            assert_eq!(fast, None, "{}", String::from_utf8_lossy(body));
            assert!(serde.is_ok());
        }
    }

    #[test]
    fn invalid_json_is_left_to_serde_json_wherever_it_is() {
        let demand = demand(".a");
        for bad in [
            &br#"{"a":1,"z":[1,}"#[..],
            br#"{"a":1} x"#,
            br#"{"a":1,"z":"\x"}"#,
            br#"{"a":1,"z":"\u12"}"#,
            b"{\"a\":1,\"z\":\"\x01\"}",
            br#"{"a":1,"z":01}"#,
            br#"{"a":1,"z":1.}"#,
            br#"{"a":1,"z":-}"#,
            br#"{"a":1,"z":1e}"#,
            br#"{"a":1,"z":tru}"#,
            br#"{"a":1,"z":{"y" 1}}"#,
            br#"{"a":1,"z":{"y":1,}}"#,
            br#"{"a":1,"z":[1 2]}"#,
            br#"{"a":1,"z":[}"#,
            br#"{"a":1,"z":[1,]}"#,
            br#"{"a":1,"z":{"y":[{},]}}"#,
            br#"{"a":1,}"#,
            br#"{"a" 1}"#,
            br#"{"a":[1,]}"#,
            b"{\"a\":\"\xff\"}",
            br#""#,
            br#"{"a":1"#,
        ] {
            let (fast, serde) = both(bad, &demand);
            assert_eq!(fast, None, "{}", String::from_utf8_lossy(bad));
            assert!(serde.is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-c]{0,2}".prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 40, 5, |inner| {
            let key = prop_oneof![Just("a".to_string()), Just("b".to_string()), "\\PC{0,3}"];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::vec((key, inner), 0..5)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    /// A body as JSON text, compact or pretty or with every non-ASCII character escaped,
    /// maybe with one byte changed, added or taken out.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        (
            json(),
            0..3u8,
            any::<Option<(prop::sample::Index, u8, u8)>>(),
        )
            .prop_map(|(value, style, edit)| {
                let mut bytes = match style {
                    0 => serde_json::to_vec(&value).unwrap(),
                    1 => serde_json::to_vec_pretty(&value).unwrap(),
                    _ => serde_json::to_string(&value)
                        .unwrap()
                        .chars()
                        .map(|c| match c {
                            c if c.is_ascii() => c.to_string(),
                            c => c
                                .encode_utf16(&mut [0; 2])
                                .iter()
                                .map(|u| format!("\\u{u:04x}"))
                                .collect(),
                        })
                        .collect::<String>()
                        .into_bytes(),
                };
                if let Some((at, kind, byte)) = edit
                    && !bytes.is_empty()
                {
                    let at = at.index(bytes.len());
                    let byte = b"{}[],:\"\\0-.e tfn\x01\xff"[usize::from(byte) % 18];
                    match kind % 3 {
                        0 => bytes[at] = byte,
                        1 => bytes.insert(at, byte),
                        _ => {
                            bytes.remove(at);
                        }
                    }
                }
                bytes
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]
        /// Whatever the fast reader accepts, serde_json accepts with the same value.
        #[test]
        fn the_fast_reader_accepts_only_what_serde_json_accepts_alike(
            bytes in body(),
            code in prop::sample::select(vec![".a", ".a.b, .b[]", ".[]", ".[].a", ".a | type", "..", ".b[0]"]),
        ) {
            let demand = demand(code);
            let (fast, serde) = both(&bytes, &demand);
            if let Some(fast) = fast {
                prop_assert_eq!(Ok(fast), serde, "{}", String::from_utf8_lossy(&bytes));
            }
        }
    }
}
