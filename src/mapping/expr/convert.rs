//! Values between serde_json and jaq: a webhook's bindings converted once, and outputs
//! converted back within the evaluation's [`Limits`].

use jaq_json::{Num, Val};
use serde_json::Value;

use super::Limits;

/// Deepest nesting [`Input::from_value`] converts (serde_json's parser stops at 128).
const MAX_INPUT_DEPTH: usize = 128;

/// Adds an output, converted to JSON, within `limits`.
pub(super) fn collect(
    outputs: &mut Vec<Value>,
    value: &Val,
    limits: &Limits,
    size: &mut usize,
) -> Result<(), String> {
    if outputs.len() == limits.max_outputs {
        return Err(format!("yields more than {} values", limits.max_outputs));
    }
    outputs.push(to_json(value, 0, limits, size)?);
    Ok(())
}

pub(super) fn from_json(value: &Value, depth: usize) -> Val {
    match value {
        _ if depth > MAX_INPUT_DEPTH => Val::Null,
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Val::Num(Num::from_integral(i)),
            (None, Some(u)) => Val::Num(Num::from_integral(u)),
            _ => Val::Num(Num::Float(n.as_f64().unwrap_or(f64::NAN))),
        },
        Value::String(s) => Val::from(s.clone()),
        Value::Array(items) => items.iter().map(|v| from_json(v, depth + 1)).collect(),
        Value::Object(entries) => Val::obj(
            entries
                .iter()
                .map(|(k, v)| (Val::from(k.clone()), from_json(v, depth + 1)))
                .collect(),
        ),
    }
}

/// Converts an output, counting its approximate JSON size into `size`.
fn to_json(v: &Val, depth: usize, limits: &Limits, size: &mut usize) -> Result<Value, String> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (value, bytes) = match v {
        Val::Null => (Value::Null, 4),
        Val::Bool(b) => (Value::Bool(*b), 5),
        Val::Num(n) => (number(n), 8),
        Val::TStr(s) | Val::BStr(s) => (Value::String(text(s)), s.len() + 2),
        Val::Arr(_) | Val::Obj(_) if depth >= limits.max_depth => {
            return Err(format!(
                "yields a value nested deeper than {} levels",
                limits.max_depth
            ));
        }
        Val::Arr(items) => {
            *size += 2 + items.len();
            let items = items.iter().map(|x| to_json(x, depth + 1, limits, size));
            (Value::Array(items.collect::<Result<_, _>>()?), 0)
        }
        Val::Obj(entries) => {
            let mut object = serde_json::Map::with_capacity(entries.len());
            for (k, x) in entries.iter() {
                let key = match k {
                    Val::TStr(s) | Val::BStr(s) => text(s),
                    other => other.to_string(),
                };
                *size += key.len() + 4;
                object.insert(key, to_json(x, depth + 1, limits, size)?);
            }
            (Value::Object(object), 2)
        }
    };
    *size += bytes;
    if *size > limits.max_output_bytes {
        return Err(format!(
            "yields more than {} bytes of JSON",
            limits.max_output_bytes
        ));
    }
    Ok(value)
}

/// Integers stay integers; decimals and floats go through f64 (shortest round trip, so
/// `0.3` prints as `0.3`); NaN and infinities become null.
fn number(n: &Num) -> Value {
    let float = |f: f64| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number);
    match n {
        Num::Int(i) => Value::from(*i as i64),
        Num::BigInt(_) => {
            let digits = n.to_string();
            let int = digits.parse::<i64>().map(Value::from);
            int.or_else(|_| digits.parse::<u64>().map(Value::from))
                .unwrap_or_else(|_| float(digits.parse().unwrap_or(f64::NAN)))
        }
        Num::Float(f) => float(*f),
        Num::Dec(text) => float(text.parse().unwrap_or(f64::NAN)),
    }
}
