//! Parsing a webhook body into jq values, building only what the mappings read of it
//! ([`Demand`], see [`super::demand`]): the parts nobody reads are checked as JSON and
//! skipped, not built.

use std::borrow::Cow;
use std::fmt;

use jaq_json::Val;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::demand::Demand;

/// Parses JSON `bytes`, building only what `demand` reads (all of it when whole); the rest
/// is checked as JSON and skipped. Values are built as jaq-json's own parser builds them.
pub(in crate::mapping) fn parse_projected(
    bytes: &[u8],
    demand: &Demand,
) -> Result<Val, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = Project(demand).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Builds what a [`Demand`] reads of the value being parsed.
#[derive(Clone, Copy)]
struct Project<'d>(&'d Demand);

impl<'de> DeserializeSeed<'de> for Project<'_> {
    type Value = Val;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Val, D::Error> {
        if self.0.whole {
            Val::deserialize(deserializer)
        } else {
            deserializer.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for Project<'_> {
    type Value = Val;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Val, E> {
        Ok(Val::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Val, E> {
        Ok(Val::Num(jaq_json::Num::from_integral(value)))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Val, E> {
        Ok(Val::Num(jaq_json::Num::from_integral(value)))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Val, E> {
        Ok(Val::Num(jaq_json::Num::Float(value)))
    }

    fn visit_str<E>(self, value: &str) -> Result<Val, E> {
        Ok(Val::utf8_str(value.as_bytes().to_vec()))
    }

    fn visit_string<E>(self, value: String) -> Result<Val, E> {
        Ok(Val::utf8_str(value.into_bytes()))
    }

    fn visit_unit<E>(self) -> Result<Val, E> {
        Ok(Val::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val, A::Error> {
        let mut items = Vec::new();
        match self.0.each.as_deref() {
            Some(each) => {
                while let Some(item) = seq.next_element_seed(Project(each))? {
                    items.push(item);
                }
            }
            None => while seq.next_element::<IgnoredAny>()?.is_some() {},
        }
        Ok(items.into_iter().collect())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Val, A::Error> {
        let mut object = jaq_json::Map::default();
        while let Some(key) = map.next_key_seed(Key)? {
            match self.0.field(&key) {
                Some(demand) => {
                    let value = map.next_value_seed(Project(demand))?;
                    let key = String::from_utf8(key.into_owned()).map_err(|_| {
                        serde::de::Error::custom("an object key read is not valid UTF-8")
                    })?;
                    object.insert(Val::utf8_str(key.into_bytes()), value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Val::obj(object))
    }
}

/// An object's key as its bytes, borrowed from the body unless it holds escapes. Only the
/// keys of fields that are read are checked as UTF-8 (like the strings skipped, whose
/// UTF-8 serde_json does not check either): most keys are not read, so checking them all
/// would be work spent on nothing.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, [u8]>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_bytes(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, [u8]>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_borrowed_bytes<E>(self, value: &'de [u8]) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(value))
    }

    fn visit_bytes<E>(self, value: &[u8]) -> Result<Self::Value, E> {
        Ok(Cow::Owned(value.to_vec()))
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(value.as_bytes()))
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(value.as_bytes().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::expr::{Bindings, Expr, Input, Limits};

    /// `.` of an input, as JSON.
    fn whole_of(input: &Input) -> serde_json::Value {
        let bindings = Bindings::new("t", "s", &serde_json::json!({}), &serde_json::json!({}));
        let limits = Limits::default();
        Expr::compile(".")
            .unwrap()
            .eval_first(input, &bindings, &limits)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_projected_body_holds_what_is_read_and_keeps_types() {
        let body =
            br#"{"a":{"b":1.5,"c":[1,2]},"d":"x","e":[{"p":1,"q":2},3],"f":[9],"g":"s\u00e9"}"#;
        let mut demand = Expr::compile(".a.b, .e[].p, .g").unwrap().demand().clone();
        demand.merge(Expr::compile(".f | 1").unwrap().demand());
        let demand = demand.finished();
        let input = Input::parse_projected(body, &demand).unwrap();
        let expected = serde_json::json!({"a": {"b": 1.5}, "e": [{"p": 1}, 3], "f": [], "g": "sé"});
        assert_eq!(whole_of(&input), expected);
        let whole = Input::parse_projected(body, &Demand::whole()).unwrap();
        assert_eq!(
            whole_of(&whole),
            serde_json::from_slice::<serde_json::Value>(body).unwrap()
        );
    }

    #[test]
    fn keys_are_matched_whatever_their_length_and_read_keys_must_be_utf8() {
        let long = "k".repeat(70);
        let other = "q".repeat(70);
        let demand = Expr::compile(&format!(".{long}, .ab, .c.[\"x\\u00e9\"]"))
            .unwrap()
            .demand()
            .clone();
        let body =
            format!(r#"{{"{long}":1,"{other}":2,"ab":3,"ba":4,"a":5,"c":{{"x\u00e9":6,"y":7}}}}"#);
        let input = Input::parse_projected(body.as_bytes(), &demand).unwrap();
        let expected = serde_json::json!({long: 1, "ab": 3, "c": {"xé": 6}});
        assert_eq!(whole_of(&input), expected);
        // a key not read is passed over as serde_json passes over strings, without a UTF-8
        // check; one that is read must be UTF-8
        let skipped = b"{\"a\xff\":1,\"ab\":2}";
        assert!(Input::parse_projected(skipped, &demand).is_ok());
        let read = b"{\"a\xff\":1}";
        let each = Expr::compile(".[]").unwrap().demand().clone();
        let error = Input::parse_projected(read, &each).unwrap_err();
        assert!(error.contains("not valid UTF-8"), "{error}");
    }

    #[test]
    fn skipped_parts_are_still_checked_as_json() {
        let demand = Expr::compile(".a").unwrap().demand().clone();
        for bad in [
            &br#"{"a":1,"z":[1,}"#[..],
            br#"{"a":1} x"#,
            br#"{"a":1,"z":"\x"}"#,
        ] {
            let error = Input::parse_projected(bad, &demand).unwrap_err();
            assert!(error.starts_with("the body is not valid JSON"), "{error}");
        }
        // nesting deeper than serde_json's 128 levels is refused where it is built; a
        // skipped part is checked without recursion, so it cannot overflow the stack
        let nested = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let skipped = format!(r#"{{"a":1,"z":{nested}}}"#);
        assert!(Input::parse_projected(skipped.as_bytes(), &demand).is_ok());
        let read = format!(r#"{{"a":{nested}}}"#);
        assert!(Input::parse_projected(read.as_bytes(), &demand).is_err());
    }
}
