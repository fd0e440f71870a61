//! Mapping files turn a webhook into delivery plans. [`Catalog`] loads a directory of them,
//! routes a webhook by platform and topic, and returns, for each mapping that applies, a
//! [`Plan`] or a [`TranslateError`]. Translation is pure: no I/O, and a `Catalog` is shared
//! by every request thread.

mod expr;
mod file;
mod functions;
mod guard;
mod operation;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

pub use expr::{Bindings, Input, Limits};
pub use file::{Field, LoadError, Mapping, OutputNode};
pub use operation::Operation;

use crate::source::PlatformKind;

/// Bounds on what a mapping may read and produce, so a hostile or broken webhook or mapping
/// yields an error instead of exhausting the server.
#[derive(Debug, Clone)]
pub struct Guards {
    pub max_input_bytes: usize,
    pub max_payload_bytes: usize,
    pub expr: Limits,
}

impl Default for Guards {
    fn default() -> Self {
        Self {
            max_input_bytes: 2 * 1024 * 1024,
            max_payload_bytes: 256 * 1024,
            expr: Limits::default(),
        }
    }
}

/// The webhook as translation sees it.
#[derive(Debug, Clone, Copy)]
pub struct Webhook<'a> {
    pub source: &'a str,
    pub platform: PlatformKind,
    pub topic: &'a str,
    pub headers: &'a BTreeMap<String, String>,
    pub body: &'a [u8],
}

/// One payload on its way to one destination.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub mapping: String,
    pub destination: String,
    pub operation: Operation,
    /// The mapping's business key: at most one delivery per mapping and key, ever.
    pub key: String,
    pub payload: Value,
    /// The delivery this one waits for, when the mapping names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs: Option<Dependency>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependency {
    pub mapping: String,
    pub key: String,
}

/// Why a mapping could not build its payload: the file, the field, the expression, the cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{file}: {field}: {message}{}", if expression.is_empty() { String::new() } else { format!(" (expression: {expression})") })]
pub struct TranslateError {
    pub mapping: String,
    pub file: String,
    pub field: String,
    pub expression: String,
    pub message: String,
}

pub struct Catalog {
    mappings: Vec<Mapping>,
    routes: HashMap<(PlatformKind, String), Vec<usize>>,
    guards: Guards,
}

impl Catalog {
    /// Loads every `*.toml` below `dir` (sorted by path), with `$vars` expanded from the
    /// process environment. All problems of all files are returned together.
    pub fn load(dir: &Path) -> Result<Catalog, Vec<LoadError>> {
        Self::load_with_env(dir, &|name| std::env::var(name).ok())
    }

    pub fn load_with_env(
        dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Catalog, Vec<LoadError>> {
        let mut files = Vec::new();
        collect_toml_files(dir, &mut files).map_err(|e| {
            vec![LoadError {
                file: dir.to_path_buf(),
                line: None,
                field: "(directory)".into(),
                expression: None,
                message: e.to_string(),
            }]
        })?;
        files.sort();
        let mut mappings = Vec::new();
        let mut errors = Vec::new();
        for path in files {
            let id = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) => {
                    errors.push(LoadError {
                        file: path.clone(),
                        line: None,
                        field: "(file)".into(),
                        expression: None,
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            match Mapping::parse(&id, &path, &text, env) {
                Ok(mapping) => mappings.push(mapping),
                Err(mut errs) => errors.append(&mut errs),
            }
        }
        for mapping in &mappings {
            if let Some(needs) = &mapping.needs
                && !mappings.iter().any(|m| m.id == needs.mapping)
            {
                errors.push(LoadError {
                    file: mapping.file.clone(),
                    line: None,
                    field: "needs.mapping".into(),
                    expression: None,
                    message: format!("no mapping `{}` in this catalog", needs.mapping),
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self::from_mappings(mappings))
    }

    pub fn from_mappings(mappings: Vec<Mapping>) -> Catalog {
        let mut routes: HashMap<(PlatformKind, String), Vec<usize>> = HashMap::new();
        for (i, mapping) in mappings.iter().enumerate() {
            for topic in &mapping.topics {
                routes
                    .entry((mapping.platform, topic.clone()))
                    .or_default()
                    .push(i);
            }
        }
        Catalog {
            mappings,
            routes,
            guards: Guards::default(),
        }
    }

    pub fn with_guards(mut self, guards: Guards) -> Self {
        self.guards = guards;
        self
    }

    pub fn mappings(&self) -> &[Mapping] {
        &self.mappings
    }

    /// The mappings routed to this platform and topic (whether or not their `when` holds).
    pub fn routed(&self, platform: PlatformKind, topic: &str) -> impl Iterator<Item = &Mapping> {
        self.routes
            .get(&(platform, topic.to_string()))
            .into_iter()
            .flatten()
            .map(|&i| &self.mappings[i])
    }

    /// For each mapping routed to the webhook whose `when` holds: its plan, or why it failed.
    pub fn translate(&self, webhook: &Webhook<'_>) -> Vec<Result<Plan, TranslateError>> {
        let routed: Vec<&Mapping> = self.routed(webhook.platform, webhook.topic).collect();
        if routed.is_empty() {
            return Vec::new();
        }
        let input = if webhook.body.len() > self.guards.max_input_bytes {
            Err(format!(
                "the webhook body ({} bytes) is larger than the {} bytes a mapping may read",
                webhook.body.len(),
                self.guards.max_input_bytes
            ))
        } else {
            Input::parse(webhook.body)
        };
        let input = match input {
            Ok(input) => input,
            Err(message) => {
                return routed
                    .iter()
                    .map(|m| Err(error(m, "(input)", "", message.clone())))
                    .collect();
            }
        };
        let headers = serde_json::to_value(webhook.headers).expect("a string map is JSON");
        routed
            .into_iter()
            .filter_map(|mapping| {
                let bindings =
                    Bindings::new(webhook.topic, webhook.source, &headers, &mapping.vars);
                self.apply(mapping, &input, &bindings).transpose()
            })
            .collect()
    }

    /// `Ok(None)` when the mapping's `when` does not hold.
    fn apply(
        &self,
        mapping: &Mapping,
        input: &Input,
        bindings: &Bindings,
    ) -> Result<Option<Plan>, TranslateError> {
        let limits = &self.guards.expr;
        if let Some(when) = &mapping.when {
            match single(mapping, when, input, bindings, limits)? {
                Some(Value::Bool(true)) => {}
                Some(Value::Bool(false)) => return Ok(None),
                other => {
                    return Err(error(
                        mapping,
                        &when.path,
                        &when.code,
                        format!(
                            "must yield true or false, yielded {}",
                            describe(other.as_ref())
                        ),
                    ));
                }
            }
        }
        let key = key_text(mapping, &mapping.key, input, bindings, limits)?;
        let needs = match &mapping.needs {
            Some(needs) => Some(Dependency {
                mapping: needs.mapping.clone(),
                key: key_text(mapping, &needs.key, input, bindings, limits)?,
            }),
            None => None,
        };
        let payload =
            build(mapping, &mapping.output, input, bindings, limits)?.unwrap_or(Value::Null);
        if let Some((pointer, message)) = mapping.operation.violations(&payload).into_iter().next()
        {
            let segments: Vec<&str> = pointer.split('/').filter(|s| !s.is_empty()).collect();
            let field = std::iter::once("output")
                .chain(segments.iter().copied())
                .collect::<Vec<_>>()
                .join(".");
            let expression = mapping
                .output_field(&segments)
                .map(|f| f.code.clone())
                .unwrap_or_default();
            return Err(error(
                mapping,
                &field,
                &expression,
                format!("{} schema: {message}", mapping.operation),
            ));
        }
        let size = serde_json::to_vec(&payload)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > self.guards.max_payload_bytes {
            return Err(error(
                mapping,
                "output",
                "",
                format!(
                    "the payload is {size} bytes, over the {} allowed",
                    self.guards.max_payload_bytes
                ),
            ));
        }
        Ok(Some(Plan {
            mapping: mapping.id.clone(),
            destination: mapping.destination.clone(),
            operation: mapping.operation,
            key,
            payload,
            needs,
        }))
    }
}

/// Evaluates the output tree; a leaf that yields null or nothing is left out, so a missing
/// required field is reported by the schema with the expression behind it.
fn build(
    mapping: &Mapping,
    node: &OutputNode,
    input: &Input,
    bindings: &Bindings,
    limits: &Limits,
) -> Result<Option<Value>, TranslateError> {
    match node {
        OutputNode::Constant(value) => Ok(Some(value.clone())),
        OutputNode::Expr(field) => {
            Ok(single(mapping, field, input, bindings, limits)?.filter(|v| !v.is_null()))
        }
        OutputNode::Object(children) => {
            let mut object = serde_json::Map::with_capacity(children.len());
            for (name, child) in children {
                if let Some(value) = build(mapping, child, input, bindings, limits)? {
                    object.insert(name.clone(), value);
                }
            }
            Ok(Some(Value::Object(object)))
        }
    }
}

/// The one value an expression yields (`None` for none); more than one is an error, since a
/// field holds one value.
fn single(
    mapping: &Mapping,
    field: &Field,
    input: &Input,
    bindings: &Bindings,
    limits: &Limits,
) -> Result<Option<Value>, TranslateError> {
    let mut values = field
        .expr
        .eval(input, bindings, limits)
        .map_err(|message| error(mapping, &field.path, &field.code, message))?;
    if values.len() > 1 {
        return Err(error(
            mapping,
            &field.path,
            &field.code,
            format!(
                "yields {} values where one is expected; wrap it in [ … ] to make an array",
                values.len()
            ),
        ));
    }
    Ok(values.pop())
}

/// A key is a string or a number, written as text.
fn key_text(
    mapping: &Mapping,
    field: &Field,
    input: &Input,
    bindings: &Bindings,
    limits: &Limits,
) -> Result<String, TranslateError> {
    match single(mapping, field, input, bindings, limits)? {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::Number(n)) => Ok(n.to_string()),
        other => Err(error(
            mapping,
            &field.path,
            &field.code,
            format!(
                "a key must be a non-empty string or a number, got {}",
                describe(other.as_ref())
            ),
        )),
    }
}

fn describe(value: Option<&Value>) -> String {
    match value {
        None => "nothing".into(),
        Some(v) => {
            let text = v.to_string();
            if text.len() > 60 {
                format!("{}…", &text[..text.floor_char_boundary(60)])
            } else {
                text
            }
        }
    }
}

fn error(mapping: &Mapping, field: &str, expression: &str, message: String) -> TranslateError {
    TranslateError {
        mapping: mapping.id.clone(),
        file: mapping.file.display().to_string(),
        field: field.to_string(),
        expression: expression.to_string(),
        message,
    }
}

fn collect_toml_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_toml_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
    Ok(())
}
