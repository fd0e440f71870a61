//! The mapping file format: TOML whose expressions are jq, compiled once at load. Every
//! problem is reported with the file, the line where it can be found, the field and the
//! expression, and all problems of a directory are reported together.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::expr::Expr;
use super::output_schema::{OutputSchema, required_paths};
use crate::config::{expand_vars, toml_to_json};
use crate::domain::Operation;
use crate::domain::PlatformKind;

/// A problem found while loading a mapping file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {field}: {message}{}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), expression.as_ref().map(|e| format!("\n    expression: {e}")).unwrap_or_default())]
pub struct LoadError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub field: String,
    pub expression: Option<String>,
    pub message: String,
}

/// One compiled jq expression and where it came from.
#[derive(Debug)]
pub struct Field {
    /// Dotted path in the file: `key`, `when`, `output.payload.uid`.
    pub path: String,
    /// 1-based line of the file where the expression's text begins.
    pub line: Option<usize>,
    pub code: String,
    pub expr: Expr,
}

/// The `[output]` tree: tables become objects, strings are jq expressions, other TOML values
/// are constants.
#[derive(Debug)]
pub enum OutputNode {
    Object(Vec<(String, OutputNode)>),
    Expr(Field),
    Constant(Value),
}

/// A delivery this mapping's deliveries wait for: the Scalef status update needs the
/// conversion created by another mapping for the same order.
#[derive(Debug)]
pub struct Needs {
    pub mapping: String,
    pub key: Field,
}

#[derive(Debug)]
pub struct Mapping {
    /// The path below the mappings directory without `.toml`: `haravan/legion-purchase`.
    pub id: String,
    pub file: PathBuf,
    pub description: String,
    pub platform: PlatformKind,
    pub topics: Vec<String>,
    pub destination: String,
    pub operation: Operation,
    pub when: Option<Field>,
    /// `skip`: tried in order once `when` holds; the first that yields a reason (a string)
    /// skips the webhook with it.
    pub skip: Vec<Field>,
    pub key: Field,
    pub needs: Option<Needs>,
    /// `$vars`: per-shop values that are not secrets, expanded from the environment at load.
    pub vars: Value,
    pub output: OutputNode,
    /// The mapping's own rules for its output (`required`, `schema`), checked after its
    /// operation's schema.
    pub output_schema: Option<OutputSchema>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    description: String,
    platform: PlatformKind,
    topics: Vec<String>,
    destination: String,
    operation: Operation,
    when: Option<String>,
    skip: Option<RawSkip>,
    key: String,
    needs: Option<RawNeeds>,
    #[serde(default)]
    vars: toml::Table,
    /// Dotted paths of output fields that must be present: `["email", "contact.phone"]`.
    #[serde(default)]
    required: Vec<String>,
    schema: Option<RawSchema>,
    output: toml::Table,
}

/// `schema = "crm.schema.json"` (a file beside the mapping), or `[schema]` written inline.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "the name of a JSON Schema file beside the mapping, or a table holding the schema"
)]
enum RawSchema {
    File(String),
    Inline(toml::Table),
}

/// `skip = '…'`, or `skip = ['…', '…']`.
#[derive(Deserialize)]
#[serde(untagged, expecting = "a jq expression, or an array of them")]
enum RawSkip {
    One(String),
    Many(Vec<String>),
}

impl RawSkip {
    /// Each expression with its path in the file: `skip`, or `skip[0]`, `skip[1]`, ….
    fn expressions(&self) -> Vec<(String, &str)> {
        match self {
            RawSkip::One(code) => vec![("skip".to_string(), code.as_str())],
            RawSkip::Many(codes) => codes
                .iter()
                .enumerate()
                .map(|(i, code)| (format!("skip[{i}]"), code.as_str()))
                .collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNeeds {
    mapping: String,
    key: String,
}

impl Mapping {
    /// Parses and compiles one file; `id` is its name in the catalog.
    pub fn parse(
        id: &str,
        file: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Mapping, Vec<LoadError>> {
        let error =
            |line: Option<usize>, field: &str, expression: Option<&str>, message: String| {
                LoadError {
                    file: file.to_path_buf(),
                    line,
                    field: field.to_string(),
                    expression: expression.map(str::to_string),
                    message,
                }
            };
        let raw: RawMapping = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|span| line_at(text, span.start));
            vec![error(
                line,
                "(file)",
                None,
                e.message().trim_end().to_string(),
            )]
        })?;

        let mut errors = Vec::new();
        let starts = string_starts(text);
        let mut compile = |path: &str, code: &str| -> Option<Field> {
            let start = starts.get(path).copied();
            let line = start
                .map(|offset| line_at(text, offset))
                .or_else(|| line_of(text, code));
            match Expr::compile(code) {
                Ok(expr) => Some(Field {
                    path: path.to_string(),
                    line,
                    code: code.to_string(),
                    expr,
                }),
                Err(e) => {
                    // the line of the part jaq stops at, within a multi-line expression
                    let at = e
                        .offset
                        .zip(line)
                        .map(|(offset, line)| line + code[..offset].matches('\n').count());
                    errors.push(error(
                        at.or(line),
                        path,
                        Some(code),
                        with_hint(code, e.message),
                    ));
                    None
                }
            }
        };
        let when = raw.when.as_deref().map(|code| compile("when", code));
        let skip: Vec<Option<Field>> = raw
            .skip
            .iter()
            .flat_map(RawSkip::expressions)
            .map(|(path, code)| compile(&path, code))
            .collect();
        let key = compile("key", &raw.key);
        let needs = raw
            .needs
            .as_ref()
            .map(|n| (n.mapping.clone(), compile("needs.key", &n.key)));
        let output = compile_tree(&raw.output, "output", &mut compile);

        if raw.topics.is_empty() {
            errors.push(error(
                None,
                "topics",
                None,
                "list at least one topic".into(),
            ));
        }
        if raw.destination.trim().is_empty() {
            errors.push(error(
                None,
                "destination",
                None,
                "name a destination".into(),
            ));
        }
        let vars = match expand_vars(&raw.vars, env) {
            Ok(vars) => vars,
            Err((name, message)) => {
                errors.push(error(
                    line_of(text, &name),
                    &format!("vars.{name}"),
                    None,
                    message,
                ));
                Value::Null
            }
        };
        let output_schema = match own_schema(file, &raw.schema) {
            Ok(schema) => {
                let declared = schema
                    .as_ref()
                    .map(|(schema, _)| required_paths(schema))
                    .unwrap_or_default();
                if let Some(output) = &output {
                    for path in raw.required.iter().chain(&declared) {
                        if !output.has_field(path) {
                            errors.push(error(
                                line_of(text, path),
                                if raw.required.contains(path) { "required" } else { "schema" },
                                None,
                                format!("`{path}` is not a field of [output], so it could never be present"),
                            ));
                        }
                    }
                }
                OutputSchema::build(&raw.required, schema).unwrap_or_else(|message| {
                    errors.push(error(line_of(text, "schema"), "schema", None, message));
                    None
                })
            }
            Err(message) => {
                errors.push(error(line_of(text, "schema"), "schema", None, message));
                None
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Mapping {
            id: id.to_string(),
            file: file.to_path_buf(),
            description: raw.description,
            platform: raw.platform,
            topics: raw.topics,
            destination: raw.destination,
            operation: raw.operation,
            when: when.flatten(),
            skip: skip.into_iter().flatten().collect(),
            key: key.expect("no errors, so compiled"),
            needs: needs.map(|(mapping, key)| Needs {
                mapping,
                key: key.expect("no errors, so compiled"),
            }),
            vars,
            output: output.expect("no errors, so compiled"),
            output_schema,
        })
    }

    /// Every expression of the mapping: `when`, `skip`, `key`, `needs.key` and the output's.
    pub fn fields(&self) -> Vec<&Field> {
        fn output<'m>(node: &'m OutputNode, fields: &mut Vec<&'m Field>) {
            match node {
                OutputNode::Object(children) => {
                    children.iter().for_each(|(_, child)| output(child, fields));
                }
                OutputNode::Expr(field) => fields.push(field),
                OutputNode::Constant(_) => {}
            }
        }
        let mut fields: Vec<&Field> = self.when.iter().collect();
        fields.extend(&self.skip);
        fields.push(&self.key);
        fields.extend(self.needs.iter().map(|needs| &needs.key));
        output(&self.output, &mut fields);
        fields
    }

    /// Every compiled expression with its path, for finding the one behind a field.
    pub fn output_field(&self, pointer: &[&str]) -> Option<&Field> {
        let mut node = &self.output;
        for segment in pointer {
            match node {
                OutputNode::Object(children) => {
                    node = &children.iter().find(|(name, _)| name == segment)?.1;
                }
                OutputNode::Expr(field) => return Some(field),
                OutputNode::Constant(_) => return None,
            }
        }
        match node {
            OutputNode::Expr(field) => Some(field),
            _ => None,
        }
    }
}

impl OutputNode {
    /// Whether the tree has a field (an expression, a constant or a table) at the dotted
    /// `path`: `email`, `contact.phone`.
    pub fn has_field(&self, path: &str) -> bool {
        let mut node = self;
        for segment in path.split('.') {
            match node {
                OutputNode::Object(children) => {
                    match children.iter().find(|(name, _)| name == segment) {
                        Some((_, child)) => node = child,
                        None => return false,
                    }
                }
                // an expression may yield an object with any fields
                OutputNode::Expr(_) => return true,
                OutputNode::Constant(value) => {
                    return value.pointer(&format!("/{segment}")).is_some();
                }
            }
        }
        true
    }
}

/// The mapping's own JSON Schema, if it declares one, with how it was declared: read from
/// the file it names (relative to the mapping's folder), or written inline.
fn own_schema(file: &Path, raw: &Option<RawSchema>) -> Result<Option<(Value, String)>, String> {
    match raw {
        None => Ok(None),
        Some(RawSchema::Inline(table)) => Ok(Some((
            toml_to_json(&toml::Value::Table(table.clone())),
            "schema".into(),
        ))),
        Some(RawSchema::File(name)) => {
            let path = file.parent().unwrap_or(Path::new(".")).join(name);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read the schema file {}: {e}", path.display()))?;
            let schema = serde_json::from_str(&text)
                .map_err(|e| format!("the schema file {} is not JSON: {e}", path.display()))?;
            Ok(Some((schema, format!("schema {name}"))))
        }
    }
}

/// Where the text of each string value of the file begins (past its opening quotes, and
/// past the newline that may follow `'''`), by its dotted path: `when`, `skip[1]`,
/// `needs.key`, `output.payload.uid`. Empty when the file does not parse (its error is
/// reported elsewhere).
fn string_starts(text: &str) -> std::collections::HashMap<String, usize> {
    use toml::de::{DeTable, DeValue};
    fn value(
        text: &str,
        path: String,
        item: &toml::Spanned<DeValue<'_>>,
        out: &mut std::collections::HashMap<String, usize>,
    ) {
        match item.get_ref() {
            DeValue::String(_) => {
                let start = item.span().start;
                let rest = &text[start.min(text.len())..];
                let open = if rest.starts_with("'''") || rest.starts_with("\"\"\"") {
                    let after = &rest[3..];
                    3 + if after.starts_with("\r\n") {
                        2
                    } else {
                        usize::from(after.starts_with('\n'))
                    }
                } else {
                    1
                };
                out.insert(path, start + open);
            }
            DeValue::Array(items) => {
                for (i, element) in items.iter().enumerate() {
                    value(text, format!("{path}[{i}]"), element, out);
                }
            }
            DeValue::Table(inner) => table(text, &path, inner, out),
            _ => {}
        }
    }
    fn table(
        text: &str,
        prefix: &str,
        table: &DeTable<'_>,
        out: &mut std::collections::HashMap<String, usize>,
    ) {
        for (key, item) in table {
            let path = if prefix.is_empty() {
                key.get_ref().to_string()
            } else {
                format!("{prefix}.{}", key.get_ref())
            };
            value(text, path, item, out);
        }
    }
    let mut out = std::collections::HashMap::new();
    if let Ok(root) = DeTable::parse(text) {
        table(text, "", root.get_ref(), &mut out);
    }
    out
}

fn compile_tree(
    table: &toml::Table,
    path: &str,
    compile: &mut dyn FnMut(&str, &str) -> Option<Field>,
) -> Option<OutputNode> {
    let mut children = Vec::with_capacity(table.len());
    let mut ok = true;
    for (name, value) in table {
        let child_path = format!("{path}.{name}");
        let node = match value {
            toml::Value::String(code) => compile(&child_path, code).map(OutputNode::Expr),
            toml::Value::Table(inner) => compile_tree(inner, &child_path, compile),
            other => Some(OutputNode::Constant(toml_to_json(other))),
        };
        match node {
            Some(node) => children.push((name.clone(), node)),
            None => ok = false,
        }
    }
    ok.then_some(OutputNode::Object(children))
}

/// Integrators write `currency = "VND"` meaning the text; in jq that is a call of `VND`.
fn with_hint(code: &str, message: String) -> String {
    let bare_word = !code.is_empty()
        && code
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == ' ' || c == '-');
    if bare_word {
        format!(
            "{message} (to write the text {code}, quote it inside the TOML string: '\"{code}\"')"
        )
    } else {
        message
    }
}

/// 1-based line of a byte offset.
fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// 1-based line where `needle` first appears in the file, when it appears verbatim.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    let first_line = needle.lines().next().filter(|l| !l.trim().is_empty())?;
    text.find(first_line).map(|offset| line_at(text, offset))
}
