//! `storehook test`: the tests an integrator writes beside a mapping. `NAME.test.toml` tests
//! the mapping `NAME.toml` in the same folder: each `[[case]]` names a webhook (a recorded
//! fixture, or a body written inline) and what the mapping must make of it: a payload with
//! some fields (`output`) or exactly one (`output_exact`), a skip (`skipped`), or nothing
//! (`applies = false`). The format is described in `mappings/README.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::Value;

use super::mapping::{Recorded, load_catalog, source_of};
use crate::config::{Config, toml_to_json};
use crate::fixture::Fixture;
use crate::mapping::{Catalog, Mapping, Outcome, TEST_FILE_SUFFIX, files_below, is_test_file};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTestFile {
    case: Vec<toml::Spanned<RawCase>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: Option<String>,
    fixture: Option<String>,
    body: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    source: Option<String>,
    topic: Option<String>,
    output: Option<toml::Table>,
    output_exact: Option<toml::Table>,
    key: Option<String>,
    skipped: Option<String>,
    applies: Option<bool>,
}

/// What a case expects the mapping to make of its webhook.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// A plan whose payload has these fields (`exact`: is this payload), with this key when
    /// one is given.
    Output {
        fields: Value,
        exact: bool,
        key: Option<String>,
    },
    /// A skip whose reason contains this text, with this key when one is given.
    Skipped { reason: String, key: Option<String> },
    /// Nothing: the mapping does not apply.
    NotApplies,
}

impl RawCase {
    fn expect(&self) -> Result<Expect, String> {
        let given = [
            self.output.is_some().then_some("output"),
            self.output_exact.is_some().then_some("output_exact"),
            self.skipped.is_some().then_some("skipped"),
            self.applies.is_some().then_some("applies"),
        ];
        let given: Vec<_> = given.into_iter().flatten().collect();
        if given.len() != 1 {
            let found = if given.is_empty() {
                "none".to_string()
            } else {
                given.join(", ")
            };
            return Err(format!(
                "expect exactly one of output, output_exact, skipped, applies = false (found: {found})"
            ));
        }
        let key = self.key.clone();
        Ok(match (&self.output, &self.output_exact, &self.skipped) {
            (Some(fields), _, _) | (_, Some(fields), _) => Expect::Output {
                fields: toml_to_json(&toml::Value::Table(fields.clone())),
                exact: self.output_exact.is_some(),
                key,
            },
            (_, _, Some(reason)) => Expect::Skipped {
                reason: reason.clone(),
                key,
            },
            (None, None, None) => {
                if self.applies == Some(true) {
                    return Err(
                        "applies = true checks nothing: expect output, output_exact or skipped"
                            .into(),
                    );
                }
                if key.is_some() {
                    return Err(
                        "key goes with output, output_exact or skipped, not applies = false".into(),
                    );
                }
                Expect::NotApplies
            }
        })
    }
}

/// One case, ready to run.
struct Case {
    name: String,
    recorded: Recorded,
    source: String,
    expect: Expect,
}

/// A test file's cases, and the problems of those that could not be read (each naming the
/// file, the line and the case).
fn read_cases(path: &Path, mapping: &Mapping, config: &Config) -> (Vec<Case>, Vec<String>) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return (Vec::new(), vec![format!("{}: {e}", path.display())]),
    };
    let raw: RawTestFile = match toml::from_str(&text) {
        Ok(raw) => raw,
        Err(e) => {
            let line = e
                .span()
                .map(|span| format!(":{}", line_at(&text, span.start)))
                .unwrap_or_default();
            let message = e.message().trim_end();
            return (
                Vec::new(),
                vec![format!("{}{line}: {message}", path.display())],
            );
        }
    };
    if raw.case.is_empty() {
        return (
            Vec::new(),
            vec![format!("{}: no [[case]] to run", path.display())],
        );
    }
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for (index, spanned) in raw.case.iter().enumerate() {
        let line = line_at(&text, spanned.span().start);
        let raw = spanned.get_ref();
        let name = raw.name.clone().unwrap_or_else(|| {
            raw.fixture
                .as_deref()
                .and_then(|f| Path::new(f).file_stem())
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("case {}", index + 1))
        });
        match read_case(path, raw, mapping, config) {
            Ok((recorded, source, expect)) => cases.push(Case {
                name,
                recorded,
                source,
                expect,
            }),
            Err(e) => errors.push(format!("{}:{line}: case `{name}`: {e:#}", path.display())),
        }
    }
    (cases, errors)
}

fn read_case(
    path: &Path,
    raw: &RawCase,
    mapping: &Mapping,
    config: &Config,
) -> anyhow::Result<(Recorded, String, Expect)> {
    let expect = raw.expect().map_err(anyhow::Error::msg)?;
    let fixture = match (&raw.fixture, &raw.body) {
        (Some(file), None) => {
            if raw.headers.is_some() {
                anyhow::bail!("headers go with body; a fixture's are in its NAME.headers");
            }
            let file = path.parent().unwrap_or(Path::new("")).join(file);
            Fixture::load(&file)?
        }
        (None, Some(body)) => Fixture {
            path: path.to_path_buf(),
            body: body.clone().into_bytes(),
            headers: raw
                .headers
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            source: None,
        },
        _ => anyhow::bail!("give either fixture or body"),
    };
    let platform = mapping.platform;
    let source = match raw.source.as_deref() {
        Some(id) => match config.sources.get(id) {
            Some(source) if source.platform == platform => id.to_string(),
            Some(source) => anyhow::bail!(
                "source `{id}` is a {} source in {}, and {} is a {platform} mapping",
                source.platform,
                config.origin,
                mapping.id
            ),
            None => anyhow::bail!("no source `{id}` in {}", config.origin),
        },
        None => source_of(config, platform, None, &fixture)?.to_string(),
    };
    // The case's topic, else the one the fixture records, else the mapping's first.
    let topic_header = crate::source::platform(platform).topic_header();
    let topic = raw
        .topic
        .clone()
        .or_else(|| fixture.header(topic_header).map(str::to_string))
        .or_else(|| mapping.topics.first().cloned())
        .context("the mapping has no topic: give topic")?;
    let recorded = Recorded::new(fixture, platform, Some(&topic))?;
    Ok((recorded, source, expect))
}

/// Runs one case: `Ok` when the mapping did what it expects, else why not, over lines.
fn run_case(catalog: &Catalog, mapping: &Mapping, case: &Case) -> Result<(), String> {
    let webhook = case.recorded.webhook(&case.source);
    let routed = catalog
        .routed(mapping.platform, webhook.topic)
        .any(|m| m.id == mapping.id);
    let result = catalog.translate(&webhook).into_iter().find(|r| match r {
        Ok(outcome) => outcome.mapping() == mapping.id,
        Err(err) => err.mapping == mapping.id,
    });
    let outcome = match result {
        Some(Ok(outcome)) => Some(outcome),
        Some(Err(err)) => return Err(format!("the mapping failed: {err}")),
        None => None,
    };
    let not_applied = || {
        if routed {
            "the mapping does not apply (its when is false)".to_string()
        } else {
            format!(
                "the mapping does not apply (topic {} is not one of its topics)",
                webhook.topic
            )
        }
    };
    match (&case.expect, outcome) {
        (Expect::NotApplies, None) => Ok(()),
        (Expect::NotApplies, Some(Outcome::Plan(plan))) => Err(format!(
            "expected the mapping not to apply, but it made a plan with key {}",
            plan.key
        )),
        (Expect::NotApplies, Some(Outcome::Skip(skip))) => Err(format!(
            "expected the mapping not to apply, but it skipped the webhook (key {}): {}",
            skip.key, skip.skipped
        )),
        (Expect::Output { .. }, None) => Err(format!("expected a plan, but {}", not_applied())),
        (Expect::Output { .. }, Some(Outcome::Skip(skip))) => Err(format!(
            "expected a plan, but the mapping skipped the webhook (key {}): {}",
            skip.key, skip.skipped
        )),
        (Expect::Output { fields, exact, key }, Some(Outcome::Plan(plan))) => {
            let mut problems = String::new();
            if let Some(key) = key
                && *key != plan.key
            {
                writeln!(problems, "key: expected {key:?}, got {:?}", plan.key).unwrap();
            }
            let same = if *exact {
                same_json(fields, &plan.payload)
            } else {
                has_fields(fields, &plan.payload)
            };
            if !same {
                let shown = shown_actual(fields, &plan.payload, *exact);
                writeln!(
                    problems,
                    "{} differs (- expected, + actual):",
                    if *exact { "the payload" } else { "the output" }
                )
                .unwrap();
                problems.push_str(&diff(fields, &shown));
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(problems)
            }
        }
        (Expect::Skipped { .. }, None) => Err(format!("expected a skip, but {}", not_applied())),
        (Expect::Skipped { reason, .. }, Some(Outcome::Plan(plan))) => Err(format!(
            "expected a skip (reason containing {reason:?}), but the mapping made a plan with key {}",
            plan.key
        )),
        (Expect::Skipped { reason, key }, Some(Outcome::Skip(skip))) => {
            let mut problems = Vec::new();
            if !skip.skipped.contains(reason.as_str()) {
                problems.push(format!(
                    "expected a skip whose reason contains {reason:?}, got the reason {:?}",
                    skip.skipped
                ));
            }
            if let Some(key) = key
                && *key != skip.key
            {
                problems.push(format!("key: expected {key:?}, got {:?}", skip.key));
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(problems.join("\n"))
            }
        }
    }
}

/// Whether two JSON values are equal, a number equal whether written as an integer or with
/// a fraction (`3` and `3.0`).
fn same_json(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(e), Value::Number(a)) => {
            e == a || ((e.is_f64() || a.is_f64()) && e.as_f64() == a.as_f64())
        }
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(e, a)| same_json(e, a))
        }
        (Value::Object(e), Value::Object(a)) => {
            e.len() == a.len()
                && e.iter()
                    .all(|(k, e)| a.get(k).is_some_and(|a| same_json(e, a)))
        }
        _ => expected == actual,
    }
}

/// Whether `actual` has every field of `expected`, equal: objects are compared field by
/// field (an object within included), anything else whole.
fn has_fields(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .all(|(k, e)| a.get(k).is_some_and(|a| has_fields(e, a))),
        _ => same_json(expected, actual),
    }
}

/// `actual` as it is compared with `expected`, for the diff: without the fields `expected`
/// does not list (unless `exact`), and with a value equal to the expected one written as it
/// is (`3` rather than `3.0`), so that the diff shows only what differs.
fn shown_actual(expected: &Value, actual: &Value, exact: bool) -> Value {
    if same_json(expected, actual) {
        return expected.clone();
    }
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => Value::Object(
            a.iter()
                .filter(|(k, _)| exact || e.contains_key(*k))
                .map(|(k, a)| {
                    let shown = match e.get(k) {
                        Some(e) => shown_actual(e, a, exact),
                        None => a.clone(),
                    };
                    (k.clone(), shown)
                })
                .collect(),
        ),
        _ => actual.clone(),
    }
}

/// A line diff of the two values as pretty JSON, each line marked `-` (expected only), `+`
/// (actual only) or ` `, with three lines of context around each change.
fn diff(expected: &Value, actual: &Value) -> String {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).expect("JSON values print") + "\n";
    let (expected, actual) = (pretty(expected), pretty(actual));
    let diff = similar::TextDiff::from_lines(&expected, &actual);
    let mut out = String::new();
    for (i, group) in diff.grouped_ops(3).iter().enumerate() {
        if i > 0 {
            out.push_str("   …\n");
        }
        for op in group {
            for change in diff.iter_changes(op) {
                let sign = match change.tag() {
                    similar::ChangeTag::Delete => '-',
                    similar::ChangeTag::Insert => '+',
                    similar::ChangeTag::Equal => ' ',
                };
                write!(out, "{sign} {change}").unwrap();
                if change.missing_newline() {
                    out.push('\n');
                }
            }
        }
    }
    out
}

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The mapping a test file tests: its path below `dir` without `.test.toml`.
fn mapping_id(dir: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(dir).unwrap_or(path);
    let id = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    id.strip_suffix(TEST_FILE_SUFFIX).unwrap_or(&id).to_string()
}

pub fn test(config: &Config, mappings: &Path) -> anyhow::Result<ExitCode> {
    let test_files: Vec<PathBuf> = files_below(mappings, "toml")
        .with_context(|| format!("cannot read mappings from {}", mappings.display()))?
        .into_iter()
        .filter(|path| is_test_file(path))
        .collect();
    let Some(catalog) = load_catalog(mappings, config) else {
        return Ok(ExitCode::FAILURE);
    };
    let (mut passed, mut failed, mut errors) = (0usize, 0usize, 0usize);
    let mut tested = Vec::new();
    for path in &test_files {
        let id = mapping_id(mappings, path);
        let Some(mapping) = catalog.mappings().iter().find(|m| m.id == id) else {
            errors += 1;
            eprintln!(
                "error: {}: no mapping {id}.toml beside it to test",
                path.display()
            );
            continue;
        };
        tested.push(id.clone());
        let (cases, problems) = read_cases(path, mapping, config);
        for problem in &problems {
            eprintln!("error: {problem}");
        }
        errors += problems.len();
        for case in &cases {
            match run_case(&catalog, mapping, case) {
                Ok(()) => {
                    passed += 1;
                    say!("ok   {id}: {}", case.name);
                }
                Err(why) => {
                    failed += 1;
                    say!("FAIL {id}: {}", case.name);
                    for line in why.lines() {
                        say!("     {line}");
                    }
                }
            }
        }
    }
    for mapping in catalog.mappings() {
        if !tested.contains(&mapping.id) {
            say!(
                "note: {} has no test file ({}{TEST_FILE_SUFFIX})",
                mapping.id,
                mapping.id
            );
        }
    }
    say!(
        "{} test files, {} cases: {passed} passed, {failed} failed, {errors} errors",
        test_files.len(),
        passed + failed
    );
    Ok(if failed == 0 && errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_are_equal_however_written_and_arrays_compare_whole() {
        assert!(same_json(&json!(3), &json!(3.0)));
        assert!(same_json(
            &json!({"a": [1, 2.5]}),
            &json!({"a": [1.0, 2.5]})
        ));
        assert!(!same_json(&json!(3), &json!("3")));
        assert!(!same_json(&json!([1]), &json!([1, 2])));
        assert!(has_fields(
            &json!({"a": [1, 2]}),
            &json!({"a": [1, 2], "b": 3})
        ));
        assert!(!has_fields(&json!({"a": [1]}), &json!({"a": [1, 2]})));
    }

    #[test]
    fn listed_fields_must_be_there_and_equal_nested_tables_too() {
        let actual = json!({"id": "7", "payload": {"uid": "1", "phone": "912"}, "meta": {}});
        assert!(has_fields(&json!({}), &actual));
        assert!(has_fields(&json!({"payload": {"uid": "1"}}), &actual));
        assert!(!has_fields(&json!({"payload": {"uid": "2"}}), &actual));
        assert!(!has_fields(&json!({"missing": 1}), &actual));
        assert!(
            !same_json(&json!({"id": "7"}), &actual),
            "exact: every field"
        );
    }

    #[test]
    fn the_diff_shows_only_the_listed_fields_and_what_differs() {
        let expected = json!({"payload": {"uid": "2", "total": 10}});
        let actual = json!({"id": "7", "payload": {"uid": "1", "total": 10.0, "x": 1}});
        let shown = shown_actual(&expected, &actual, false);
        assert_eq!(shown, json!({"payload": {"uid": "1", "total": 10}}));
        let text = diff(&expected, &shown);
        assert!(text.contains("-     \"uid\": \"2\""), "{text}");
        assert!(text.contains("+     \"uid\": \"1\""), "{text}");
        assert!(!text.contains("\"id\""), "{text}");
        let exact = shown_actual(&expected, &actual, true);
        assert_eq!(exact["id"], json!("7"));
    }

    fn expect_of(text: &str) -> Result<Expect, String> {
        let file: RawTestFile = toml::from_str(text).map_err(|e| e.to_string())?;
        file.case[0].get_ref().expect()
    }

    #[test]
    fn a_case_expects_exactly_one_outcome() {
        let expect = expect_of("[[case]]\nbody = '{}'\noutput = { a = 1 }\nkey = 'k'\n").unwrap();
        assert_eq!(
            expect,
            Expect::Output {
                fields: json!({"a": 1}),
                exact: false,
                key: Some("k".into())
            }
        );
        let expect = expect_of("[[case]]\nbody = '{}'\napplies = false\n").unwrap();
        assert_eq!(expect, Expect::NotApplies);
        let err = expect_of("[[case]]\nbody = '{}'\nskipped = 'x'\napplies = false\n").unwrap_err();
        assert!(err.contains("found: skipped, applies"), "{err}");
        let err = expect_of("[[case]]\nbody = '{}'\n").unwrap_err();
        assert!(err.contains("found: none"), "{err}");
        let err = expect_of("[[case]]\nbody = '{}'\napplies = true\n").unwrap_err();
        assert!(err.contains("checks nothing"), "{err}");
        let err = expect_of("[[case]]\nbody = '{}'\nouput = {}\n").unwrap_err();
        assert!(err.contains("ouput"), "{err}");
    }

    #[test]
    fn a_test_files_mapping_is_its_path_without_the_suffix() {
        let dir = Path::new("mappings");
        assert_eq!(
            mapping_id(
                dir,
                Path::new("mappings/haravan/salekit-audience.test.toml")
            ),
            "haravan/salekit-audience"
        );
    }
}
