//! One mapping applied to one webhook: its `when`, its `skip`, its key, the delivery it
//! needs, and its payload, built from the output tree, checked against the operation's
//! schema and bounded in size. Every failure names the file, the field and the expression.

use serde_json::Value;

use super::expr::{Bindings, Input, Limits};
use super::operation::OperationSchema;
use super::{Dependency, Field, Guards, Mapping, Outcome, OutputNode, Plan, Skip, TranslateError};

/// For one mapping and one input: its plan or its skip, `Ok(None)` when its `when` does not
/// hold, or why it failed.
pub(super) fn apply(
    mapping: &Mapping,
    input: &Input,
    bindings: &Bindings,
    guards: &Guards,
) -> Result<Option<Outcome>, Box<TranslateError>> {
    let limits = &guards.expr;
    if let Some(when) = &mapping.when {
        match single(mapping, when, input, bindings, limits)? {
            Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => return Ok(None),
            other => {
                return Err(field_error(
                    mapping,
                    when,
                    format!(
                        "must yield true or false, yielded {}",
                        describe(other.as_ref())
                    ),
                ));
            }
        }
    }
    let skipped = skip_reason(mapping, input, bindings, limits)?;
    let key = key_text(mapping, &mapping.key, input, bindings, limits)?;
    if let Some(skipped) = skipped {
        return Ok(Some(Outcome::Skip(Skip {
            mapping: mapping.id.clone(),
            destination: mapping.destination.clone(),
            operation: mapping.operation,
            key,
            skipped,
        })));
    }
    let needs = match &mapping.needs {
        Some(needs) => Some(Dependency {
            mapping: needs.mapping.clone(),
            key: key_text(mapping, &needs.key, input, bindings, limits)?,
        }),
        None => None,
    };
    let payload = build(mapping, &mapping.output, input, bindings, limits)?.unwrap_or(Value::Null);
    // the operation's schema, then the mapping's own (`required`, `schema`)
    let mut violations: Vec<(String, String)> = mapping
        .operation
        .violations(&payload)
        .into_iter()
        .map(|(pointer, message)| (pointer, format!("{} schema: {message}", mapping.operation)))
        .collect();
    if violations.is_empty()
        && let Some(own) = &mapping.output_schema
    {
        violations = own
            .violations(&payload)
            .into_iter()
            .map(|(pointer, message)| {
                (
                    pointer,
                    format!("the mapping's {}: {message}", own.declared_by),
                )
            })
            .collect();
    }
    if let Some((pointer, message)) = violations.first().cloned() {
        let segments: Vec<&str> = pointer.split('/').filter(|s| !s.is_empty()).collect();
        let field = std::iter::once("output")
            .chain(segments.iter().copied())
            .collect::<Vec<_>>()
            .join(".");
        let mut error = match mapping.output_field(&segments) {
            Some(behind) => {
                let mut error = field_error(mapping, behind, message);
                error.field = field;
                error
            }
            None => error(mapping, &field, "", message),
        };
        error.schema_errors = violations
            .iter()
            .map(|(pointer, message)| format!("{pointer}: {message}"))
            .collect();
        return Err(error);
    }
    let payload_json =
        serde_json::to_string(&payload).map_err(|e| error(mapping, "output", "", e.to_string()))?;
    let size = payload_json.len();
    if size > guards.max_payload_bytes {
        return Err(error(
            mapping,
            "output",
            "",
            format!(
                "the payload is {size} bytes, over the {} allowed",
                guards.max_payload_bytes
            ),
        ));
    }
    Ok(Some(Outcome::Plan(Plan {
        mapping: mapping.id.clone(),
        destination: mapping.destination.clone(),
        operation: mapping.operation,
        key,
        payload,
        payload_json,
        needs,
    })))
}

/// The reason of the first `skip` expression that yields one (a non-empty string); `null`,
/// `false` or nothing means "not for this reason".
fn skip_reason(
    mapping: &Mapping,
    input: &Input,
    bindings: &Bindings,
    limits: &Limits,
) -> Result<Option<String>, Box<TranslateError>> {
    for skip in &mapping.skip {
        match single(mapping, skip, input, bindings, limits)? {
            None | Some(Value::Null | Value::Bool(false)) => {}
            Some(Value::String(reason)) if !reason.trim().is_empty() => return Ok(Some(reason)),
            other => {
                return Err(field_error(
                    mapping,
                    skip,
                    format!(
                        "must yield the reason to skip (a non-empty string), or null or false to go on; yielded {}",
                        describe(other.as_ref())
                    ),
                ));
            }
        }
    }
    Ok(None)
}

/// Evaluates the output tree; a leaf that yields null or nothing is left out, so a missing
/// required field is reported by the schema with the expression behind it.
fn build(
    mapping: &Mapping,
    node: &OutputNode,
    input: &Input,
    bindings: &Bindings,
    limits: &Limits,
) -> Result<Option<Value>, Box<TranslateError>> {
    match node {
        OutputNode::Constant(value) => Ok(Some(value.clone())),
        OutputNode::Expr(field) => {
            Ok(single(mapping, field, input, bindings, limits)?.filter(|v| !v.is_null()))
        }
        OutputNode::Object(children) => {
            let mut entries = Vec::with_capacity(children.len());
            for (name, child) in children {
                if let Some(value) = build(mapping, child, input, bindings, limits)? {
                    entries.push((name.clone(), value));
                }
            }
            // collected, the map is built in one pass from its entries sorted (as a mapping
            // file's tables already are), not searched once per field
            Ok(Some(Value::Object(entries.into_iter().collect())))
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
) -> Result<Option<Value>, Box<TranslateError>> {
    let mut values = field
        .expr
        .eval(input, bindings, limits)
        .map_err(|message| {
            let mut error = field_error(mapping, field, message);
            error.evaluating = true;
            error
        })?;
    if values.len() > 1 {
        return Err(field_error(
            mapping,
            field,
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
) -> Result<String, Box<TranslateError>> {
    match single(mapping, field, input, bindings, limits)? {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::Number(n)) => Ok(n.to_string()),
        other => Err(field_error(
            mapping,
            field,
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

/// An error of one expression: its field, line and code.
fn field_error(mapping: &Mapping, field: &Field, message: String) -> Box<TranslateError> {
    let mut error = error(mapping, &field.path, &field.code, message);
    error.line = field.line;
    error
}

/// Boxed: translating returns errors rarely, and a result that holds one unboxed is large.
pub(super) fn error(
    mapping: &Mapping,
    field: &str,
    expression: &str,
    message: String,
) -> Box<TranslateError> {
    Box::new(TranslateError {
        mapping: mapping.id.clone(),
        file: mapping.file.display().to_string(),
        line: None,
        field: field.to_string(),
        expression: expression.to_string(),
        message,
        schema_errors: Vec::new(),
        evaluating: false,
    })
}
