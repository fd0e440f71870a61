//! Environment variables in configuration values: `${VAR}` and `${VAR:-default}`, and secrets,
//! which must come from the environment.

use serde_json::Value;

use crate::domain::Secret;

/// Secrets read from environment variables, with the variables that were not set. A setting
/// whose variables are all unset leaves the feature it guards switched off (and says which
/// variable turns it on); one that expands to an empty string is refused at load.
#[derive(Debug, Clone, Default)]
pub struct EnvSecrets {
    pub values: Vec<Secret>,
    pub unset_variables: Vec<String>,
}

impl EnvSecrets {
    pub fn is_set(&self) -> bool {
        !self.values.is_empty()
    }
}

/// Expands secret templates: each must name an environment variable (a secret written into
/// the file itself is refused), an unset one is recorded, an empty one is refused.
pub(super) fn env_secrets<'a>(
    templates: impl Iterator<Item = (String, &'a str)>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<EnvSecrets, (String, String)> {
    let mut out = EnvSecrets::default();
    for (key, template) in templates {
        let expanded = secret_template(template, env).map_err(|m| (key.clone(), m))?;
        if !expanded.unset_variables.is_empty() {
            out.unset_variables.extend(expanded.unset_variables);
        } else if expanded.value.is_empty() {
            return Err((
                key,
                "the secret is empty; an empty secret is refused".into(),
            ));
        } else {
            out.values.push(Secret::new(expanded.value));
        }
    }
    Ok(out)
}

/// Expands a secret's template: it must name an environment variable, and none without a
/// default (a default would be the secret, written in the file).
pub(super) fn secret_template(
    template: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Expanded, String> {
    let expanded = expand_env(template, env)?;
    if expanded.variables == 0 {
        return Err(
            "secrets come from the environment: write \"${VARIABLE}\", not the secret".into(),
        );
    }
    if let Some(name) = expanded.defaulted.first() {
        return Err(format!(
            "a secret takes no default: write \"${{{name}}}\" (a default would put the secret in the file)"
        ));
    }
    Ok(expanded)
}

/// The result of expanding `${VAR}` and `${VAR:-default}` in a string.
#[derive(Debug, PartialEq, Eq)]
pub struct Expanded {
    pub value: String,
    /// How many `${…}` references the template holds.
    pub variables: usize,
    /// Variables referenced without a default that the environment does not set.
    pub unset_variables: Vec<String>,
    /// Variables written with a default (`${VAR:-default}`).
    pub defaulted: Vec<String>,
}

/// Expands `${VAR}` (unset: recorded, expands to nothing) and `${VAR:-default}` (unset or
/// empty: the default). A `$` not followed by `{` is kept as it is.
pub fn expand_env(
    template: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Expanded, String> {
    let mut out = Expanded {
        value: String::with_capacity(template.len()),
        variables: 0,
        unset_variables: Vec::new(),
        defaulted: Vec::new(),
    };
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.value.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed `${{` in `{template}`"))?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!(
                "`${{{inner}}}` is not a variable reference like ${{NAME}} or ${{NAME:-default}}"
            ));
        }
        out.variables += 1;
        if default.is_some() {
            out.defaulted.push(name.to_string());
        }
        match (env(name), default) {
            (Some(value), Some(default)) if value.is_empty() => out.value.push_str(default),
            (Some(value), _) => out.value.push_str(&value),
            (None, Some(default)) => out.value.push_str(default),
            (None, None) => out.unset_variables.push(name.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.value.push_str(rest);
    Ok(out)
}
/// `$vars` values, as a mapping's `[vars]` and a source's `vars` write them: strings are
/// expanded from the environment (`${VAR:-default}`); a variable that is unset and has no
/// default is an error naming the value (its key) and the variable.
pub fn expand_vars(
    table: &toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, (String, String)> {
    let mut out = serde_json::Map::new();
    for (name, value) in table {
        let value = match value {
            toml::Value::String(template) => {
                let expanded = expand_env(template, env).map_err(|m| (name.clone(), m))?;
                if let Some(var) = expanded.unset_variables.first() {
                    return Err((
                        name.clone(),
                        format!("environment variable {var} is not set and has no default"),
                    ));
                }
                Value::String(expanded.value)
            }
            other => toml_to_json(other),
        };
        out.insert(name.clone(), value);
    }
    Ok(Value::Object(out))
}

pub fn toml_to_json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => Value::Object(
            table
                .iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}
