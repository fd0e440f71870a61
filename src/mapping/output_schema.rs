//! A mapping's own rules for its output, beside its operation's schema: a `required` list of
//! fields and a JSON Schema (inline as `[schema]`, or a file beside the mapping), compiled
//! into one validator at load and checked on every payload the mapping builds.

use jsonschema::error::ValidationErrorKind;
use serde_json::{Map, Value, json};

/// Every way `payload` breaks `validator`, as (JSON pointer, message), in document order. For
/// a missing required field the pointer names the field itself (`/payload/username`), not the
/// object that lacks it.
pub(super) fn violations_of(
    validator: &jsonschema::Validator,
    payload: &Value,
) -> Vec<(String, String)> {
    // the yes-or-no check stops at the first failure and builds no error: nearly every
    // payload is valid, and collecting its (no) errors took nearly twice as long
    if validator.is_valid(payload) {
        return Vec::new();
    }
    validator
        .iter_errors(payload)
        .map(|e| {
            let mut pointer = e.instance_path().to_string();
            if let ValidationErrorKind::Required { property } = e.kind() {
                pointer.push('/');
                pointer.push_str(property.as_str().unwrap_or_default());
            }
            (pointer, e.to_string())
        })
        .collect()
}

/// The mapping's own schema for its output.
#[derive(Debug)]
pub struct OutputSchema {
    validator: jsonschema::Validator,
    /// How the mapping declared it, for messages: `required`, `schema`, or
    /// `schema crm-paid.schema.json`.
    pub declared_by: String,
}

impl OutputSchema {
    /// One validator for `required` (dotted paths into the output) and `schema` (a JSON Schema
    /// for the whole output), either of which may be absent; `None` when both are. `formats`
    /// (`email`, `date-time`, …) are checked, not only noted. Err: why the schema is not one.
    pub fn build(
        required: &[String],
        schema: Option<(Value, String)>,
    ) -> Result<Option<OutputSchema>, String> {
        let mut parts = Vec::new();
        let mut declared = Vec::new();
        if !required.is_empty() {
            parts.push(required_schema(required));
            declared.push("required".to_string());
        }
        if let Some((schema, name)) = schema {
            parts.push(schema);
            declared.push(name);
        }
        let whole = match parts.len() {
            0 => return Ok(None),
            1 => parts.pop().expect("one part"),
            _ => json!({ "allOf": parts }),
        };
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&whole)
            .map_err(|e| format!("not a valid JSON Schema: {e}"))?;
        Ok(Some(OutputSchema {
            validator,
            declared_by: declared.join(" and "),
        }))
    }

    /// See [`violations_of`].
    pub fn violations(&self, payload: &Value) -> Vec<(String, String)> {
        violations_of(&self.validator, payload)
    }
}

/// `["email", "contact.phone"]` as a JSON Schema: objects, each requiring its fields.
fn required_schema(required: &[String]) -> Value {
    fn require(node: &mut Map<String, Value>, path: &[&str]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        node.insert("type".into(), json!("object"));
        let names = node
            .entry("required")
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .expect("required is an array");
        if !names.iter().any(|n| n == first) {
            names.push(json!(first));
        }
        let properties = node
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("properties is an object");
        let child = properties
            .entry(first.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("a property's schema is an object");
        require(child, rest);
    }
    let mut root = Map::new();
    for path in required {
        let segments: Vec<&str> = path.split('.').collect();
        require(&mut root, &segments);
    }
    Value::Object(root)
}

/// The dotted paths a schema requires through nested `properties` (`contact.phone`), for
/// checking at load that the output has a field for each. `allOf`, `$ref` and the like are
/// not followed: what they require is checked on each payload only.
pub fn required_paths(schema: &Value) -> Vec<String> {
    fn walk(schema: &Value, prefix: &str, out: &mut Vec<String>) {
        let path = |name: &str| {
            if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            }
        };
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            out.extend(required.iter().filter_map(Value::as_str).map(path));
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, child) in properties {
                walk(child, &path(name), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(schema, "", &mut out);
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_required_list_names_each_missing_field() {
        let required = ["email".to_string(), "contact.phone".to_string()];
        let schema = OutputSchema::build(&required, None).unwrap().unwrap();
        assert!(
            schema
                .violations(&json!({"email": "a@b.vn", "contact": {"phone": "1"}}))
                .is_empty()
        );
        let pointers: Vec<String> = schema
            .violations(&json!({"contact": {}}))
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(pointers, ["/email", "/contact/phone"]);
        assert_eq!(schema.declared_by, "required");
    }

    #[test]
    fn a_schema_and_a_required_list_are_both_checked_formats_included() {
        let own = json!({"type": "object", "properties": {"email": {"type": "string", "format": "email"}}});
        let schema = OutputSchema::build(&["id".to_string()], Some((own, "schema".into())))
            .unwrap()
            .unwrap();
        assert_eq!(schema.declared_by, "required and schema");
        let violations = schema.violations(&json!({"email": "not an address"}));
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(
            schema
                .violations(&json!({"id": 1, "email": "a@b.vn"}))
                .is_empty()
        );
    }

    #[test]
    fn a_broken_schema_is_refused_and_none_declared_is_none() {
        let err =
            OutputSchema::build(&[], Some((json!({"type": 5}), "schema".into()))).unwrap_err();
        assert!(err.contains("not a valid JSON Schema"), "{err}");
        assert!(OutputSchema::build(&[], None).unwrap().is_none());
    }

    #[test]
    fn required_paths_follow_nested_properties() {
        let schema = json!({"required": ["email", "contact"], "properties": {
            "contact": {"required": ["phone"]}, "other": {"type": "string"}}});
        assert_eq!(
            required_paths(&schema),
            ["email", "contact", "contact.phone"]
        );
    }
}
