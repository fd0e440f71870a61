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
pub(super) fn parse_projected(bytes: &[u8], demand: &Demand) -> Result<Val, serde_json::Error> {
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
                    object.insert(Val::utf8_str(key.into_owned().into_bytes()), value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Val::obj(object))
    }
}

/// An object's key, borrowed from the body unless it holds escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(value.to_string()))
    }

    fn visit_string<E>(self, value: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(value))
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

    mod generated {
        use proptest::prelude::*;
        use serde_json::Value;

        use super::super::Demand;
        use crate::mapping::expr::{Bindings, Expr, Input, Limits};

        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                (-3i64..30).prop_map(Value::from),
                prop_oneof![Just("x"), Just(""), Just("0912345678"), Just("/?ref=r")]
                    .prop_map(Value::from),
            ];
            leaf.prop_recursive(4, 48, 5, |inner| {
                let key = prop_oneof![
                    Just("a"),
                    Just("b"),
                    Just("c"),
                    Just("k"),
                    Just("name"),
                    Just("value"),
                    Just("note_attributes"),
                ];
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                    prop::collection::vec((key, inner), 0..5).prop_map(|entries| {
                        Value::Object(
                            entries
                                .into_iter()
                                .map(|(k, v)| (k.to_string(), v))
                                .collect(),
                        )
                    }),
                ]
            })
        }

        /// Small jq programs over the constructs the walk follows and some it does not.
        fn program() -> impl Strategy<Value = String> {
            let leaf = prop_oneof![
                Just(".".to_string()),
                Just(".a".to_string()),
                Just(".b".to_string()),
                Just(".a.b".to_string()),
                Just(r#"."k""#.to_string()),
                Just(".[]?".to_string()),
                Just(".[0]?".to_string()),
                Just(".c[]?.a".to_string()),
                Just("$vars.x".to_string()),
                Just("1".to_string()),
                Just(r#""s""#.to_string()),
                Just("null".to_string()),
                Just(r#"attr("a")"#.to_string()),
            ];
            leaf.prop_recursive(4, 24, 2, |inner| {
                let two = (inner.clone(), inner.clone());
                prop_oneof![
                    two.clone().prop_map(|(l, r)| format!("({l}) | ({r})")),
                    two.clone().prop_map(|(l, r)| format!("({l}), ({r})")),
                    two.clone().prop_map(|(l, r)| format!("({l}) // ({r})")),
                    two.clone().prop_map(|(l, r)| format!("({l}) == ({r})")),
                    two.clone()
                        .prop_map(|(l, r)| format!("if ({l}) then ({r}) else . end")),
                    two.clone()
                        .prop_map(|(l, r)| format!("({l}) as $v | [$v, ({r})]")),
                    two.clone()
                        .prop_map(|(l, r)| format!("first_of([({l}), ({r})])")),
                    two.clone()
                        .prop_map(|(l, r)| format!("def f(g): g | ({r}); f({l})")),
                    two.prop_map(|(l, r)| format!("{{a: ({l}), b: ({r})}}")),
                    inner.clone().prop_map(|e| format!("[({e})]")),
                    inner.clone().prop_map(|e| format!("({e}).a")),
                    inner.clone().prop_map(|e| format!("({e})[]?")),
                    inner.clone().prop_map(|e| format!("({e}) | tostring")),
                    inner.clone().prop_map(|e| format!("({e}) | length")),
                    inner.clone().prop_map(|e| format!("({e}) | keys?")),
                    inner.clone().prop_map(|e| format!("select({e})")),
                    inner.clone().prop_map(|e| format!("map({e})?")),
                    inner.clone().prop_map(|e| format!(r#""<\({e})>""#)),
                    inner.clone().prop_map(|e| format!("try ({e})")),
                    inner
                        .clone()
                        .prop_map(|e| format!("[.[]?] | .[1:] | ({e})")),
                    inner
                        .clone()
                        .prop_map(|e| format!("reduce ({e}) as $x (0; . + 1)")),
                    inner.clone().prop_map(|e| format!("[({e}) | ..]")),
                    inner.prop_map(|e| format!("to_entries? | ({e})")),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
            /// Whatever a program reads of a body, it reads the same of the projected body:
            /// the same values, and an error exactly where the whole body gives one.
            #[test]
            fn a_program_gives_the_same_over_its_projected_body(code in program(), body in json()) {
                let Ok(expr) = Expr::compile(&code) else {
                    return Ok(());
                };
                let bytes = serde_json::to_vec(&body).unwrap();
                let demand = Demand::default().finished_with(expr.demand());
                let vars = serde_json::json!({"x": "v"});
                let bindings = Bindings::new("t", "s", &serde_json::json!({}), &vars);
                let limits = Limits::default();
                let whole = expr.eval(&Input::parse(&bytes).unwrap(), &bindings, &limits);
                let projected = Input::parse_projected(&bytes, &demand).unwrap();
                let projected = expr.eval(&projected, &bindings, &limits);
                match whole {
                    Ok(values) => prop_assert_eq!(Ok(values), projected, "{} reads\n{}", code, demand),
                    Err(_) => prop_assert!(projected.is_err(), "{} reads\n{}", code, demand),
                }
            }
        }
    }
}
