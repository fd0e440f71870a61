//! The few top-level fields of a webhook body that dedupe ids are made of, read by serde_json
//! in one pass that checks the whole body is JSON but builds nothing else: the translation
//! parses the body once more into its own representation, so building a second full tree
//! here would double the parsing cost of every webhook.
//!
//! A derived struct would refuse a repeated key (serde's derive reports a duplicate field);
//! a body with one is valid JSON and is read as serde_json reads it into a map, the last
//! occurrence standing, so the map is read by a visitor of its own.

use std::fmt;

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The top-level fields any platform's dedupe id reads.
const FIELDS: [&str; 3] = ["id", "updated_at", "date_modified_gmt"];

#[derive(Debug, Default)]
pub struct BodyFields {
    values: Vec<(&'static str, Value)>,
}

impl BodyFields {
    /// Reads `raw`, which must be one JSON value in UTF-8 (any type: a body that is not an
    /// object simply has none of the fields).
    pub fn parse(raw: &[u8]) -> Result<BodyFields, String> {
        std::str::from_utf8(raw).map_err(|e| format!("the body is not UTF-8: {e}"))?;
        let mut deserializer = serde_json::Deserializer::from_slice(raw);
        let fields = deserializer
            .deserialize_any(FieldsVisitor)
            .and_then(|fields| deserializer.end().map(|()| fields))
            .map_err(|e| e.to_string())?;
        Ok(fields)
    }

    /// Sets a field; of a repeated key, the last one read stands.
    fn set(&mut self, name: &'static str, value: Value) {
        self.values.retain(|(field, _)| *field != name);
        self.values.push((name, value));
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values
            .iter()
            .find(|(field, _)| *field == name)
            .map(|(_, value)| value)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = BodyFields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BodyFields, A::Error> {
        let mut fields = BodyFields::default();
        while let Some(wanted) = map.next_key_seed(KeySeed)? {
            match wanted {
                Some(name) => {
                    fields.set(name, map.next_value::<Value>()?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BodyFields, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(BodyFields::default())
    }

    fn visit_bool<E>(self, _: bool) -> Result<BodyFields, E> {
        Ok(BodyFields::default())
    }
    fn visit_i64<E>(self, _: i64) -> Result<BodyFields, E> {
        Ok(BodyFields::default())
    }
    fn visit_u64<E>(self, _: u64) -> Result<BodyFields, E> {
        Ok(BodyFields::default())
    }
    fn visit_f64<E>(self, _: f64) -> Result<BodyFields, E> {
        Ok(BodyFields::default())
    }
    fn visit_str<E>(self, _: &str) -> Result<BodyFields, E> {
        Ok(BodyFields::default())
    }
    fn visit_unit<E>(self) -> Result<BodyFields, E> {
        Ok(BodyFields::default())
    }
}

/// A key, compared with [`FIELDS`] without allocating: the field it is, if wanted.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<&'static str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Option<&'static str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(FIELDS.into_iter().find(|field| *field == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_dedupe_fields_and_only_them() {
        let fields = BodyFields::parse(
            br#"{"id": 820982911946154508, "line_items": [{"id": 1}], "updated_at": "2024-01-01T00:00:00Z", "note": {"id": 2}}"#,
        )
        .unwrap();
        assert_eq!(fields.get("id"), Some(&json!(820982911946154508u64)));
        assert_eq!(
            fields.get("updated_at"),
            Some(&json!("2024-01-01T00:00:00Z"))
        );
        assert_eq!(fields.get("date_modified_gmt"), None);
        assert_eq!(fields.get("note"), None, "not a dedupe field");
    }

    #[test]
    fn every_repeat_is_checked_as_the_full_parse_checks_it() {
        // nested deeper than serde_json allows, in a repeat that is not the last
        let deep = format!(
            r#"{{"id": {}{}, "id": 1}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(BodyFields::parse(deep.as_bytes()).is_err());
        // the error is the full parse's, positions included
        let error = BodyFields::parse(br#"{"id": 1e999}"#).unwrap_err();
        assert!(error.contains("line 1 column 12"), "{error}");
    }

    #[test]
    fn escaped_keys_are_recognised_and_the_last_repeat_wins() {
        let fields = BodyFields::parse(br#"{"\u0069d": 1, "id": 2}"#).unwrap();
        assert_eq!(fields.get("id"), Some(&json!(2)));
    }

    #[test]
    fn any_json_is_accepted_and_anything_else_refused() {
        for ok in [
            &b"[1, {\"id\": 3}]"[..],
            b"\"text\"",
            b"12",
            b"null",
            b"true",
        ] {
            assert_eq!(BodyFields::parse(ok).unwrap().get("id"), None);
        }
        for bad in [
            &br#"{"id": "\ud800", "id": 7}"#[..],
            br#"{"id": 1e999, "id": 2}"#,
            b"1e999",
            br#""\ud800""#,
            b"{\"id\": 1",
            b"{\"id\": 1} x",
            b"",
            b"{\"a\": [1,}",
            b"{\"a\": \"\xff\"}",
        ] {
            assert!(
                BodyFields::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
