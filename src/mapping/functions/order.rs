//! Functions over an order: a stable id (`uuid5`), its attributes (`attr`), the first value
//! present (`first_of`), and a parameter of a URL it holds (`url_param`).

use jaq_core::ValR;
use jaq_json::Val;

use super::{field, is_null, str_arg};

pub(in crate::mapping) fn uuid5(namespace: &Val, name: &Val) -> ValR<Val> {
    let namespace = str_arg(namespace, "uuid5", "the namespace")?;
    let name = str_arg(name, "uuid5", "the name")?;
    let namespace = uuid::Uuid::parse_str(namespace)
        .unwrap_or_else(|_| uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, namespace.as_bytes()));
    Ok(Val::from(
        uuid::Uuid::new_v5(&namespace, name.as_bytes()).to_string(),
    ))
}

/// The value of the first `{name, value}` in `.note_attributes` or `{key, value}` in
/// `.meta_data` whose name is `name`, or null.
pub(in crate::mapping) fn attr(order: &Val, name: &Val) -> Val {
    for (list, name_key) in [("note_attributes", "name"), ("meta_data", "key")] {
        let Some(Val::Arr(entries)) = field(order, list) else {
            continue;
        };
        if let Some(entry) = entries
            .iter()
            .find(|e| field(e, name_key).is_some_and(|n| n == name))
        {
            return field(entry, "value").cloned().unwrap_or(Val::Null);
        }
    }
    Val::Null
}

/// The first element that is not null, `""`, `[]` or `{}`, or null. A non-array counts as
/// an array of itself.
pub(in crate::mapping) fn first_of(values: Val) -> Val {
    let present = |v: &Val| match v {
        Val::Null => false,
        Val::TStr(text) => !text.is_empty(),
        Val::Arr(items) => !items.is_empty(),
        Val::Obj(entries) => !entries.is_empty(),
        _ => true,
    };
    match values {
        Val::Arr(items) => items
            .iter()
            .find(|v| present(v))
            .cloned()
            .unwrap_or(Val::Null),
        value if present(&value) => value,
        _ => Val::Null,
    }
}

/// The query string of a URL, of a path with a query, or a bare query (`a=1&b=2`).
fn query_of(text: &str) -> &str {
    let text = text.split('#').next().unwrap_or_default();
    match text.split_once('?') {
        Some((_, query)) => query,
        None if text.contains('=') && !text.contains("://") && !text.starts_with('/') => text,
        None => "",
    }
}

pub(in crate::mapping) fn url_param(input: &Val, name: &Val) -> ValR<Val> {
    let name = str_arg(name, "url_param", "the parameter name")?;
    if is_null(input) {
        return Ok(Val::Null);
    }
    let text = str_arg(input, "url_param", "the input")?;
    let value = form_urlencoded::parse(query_of(text).as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned());
    Ok(value.map_or(Val::Null, Val::from))
}
