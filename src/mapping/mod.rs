//! Mapping files turn a webhook into delivery plans. [`Catalog`] loads a directory of them,
//! routes a webhook by platform and topic, and returns, for each mapping that applies, an
//! [`Outcome`] (a [`Plan`], or the mapping's [`Skip`]) or a [`TranslateError`]. Translation is pure: no I/O, and a `Catalog` is shared
//! by every request thread.

mod apply;
mod expr;
mod fast;
mod file;
mod functions;
mod guard;
mod operation;
mod output_schema;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

pub use expr::{Bindings, Input, Limits};
pub use file::{Field, LoadError, Mapping, OutputNode};
pub use operation::OperationSchema;

use crate::domain::{Operation, PlatformKind};
use apply::{apply, error};
use fast::Demand;

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
    /// `payload` as compact JSON text, written once: its size is checked against the
    /// guard, and it is what the store keeps.
    #[serde(skip)]
    pub payload_json: String,
    /// The delivery this one waits for, when the mapping names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs: Option<Dependency>,
}

/// A mapping that applies to a webhook but said not to send it (its `skip`), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skip {
    pub mapping: String,
    pub destination: String,
    pub operation: Operation,
    pub key: String,
    /// The reason the `skip` expression yielded.
    pub skipped: String,
}

/// What one mapping that applies made of a webhook. Serialised as the plan or the skip
/// itself (`storehook translate` lists both in one array).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    Plan(Plan),
    Skip(Skip),
}

impl Outcome {
    pub fn mapping(&self) -> &str {
        match self {
            Outcome::Plan(plan) => &plan.mapping,
            Outcome::Skip(skip) => &skip.mapping,
        }
    }

    pub fn plan(&self) -> Option<&Plan> {
        match self {
            Outcome::Plan(plan) => Some(plan),
            Outcome::Skip(_) => None,
        }
    }

    pub fn skip(&self) -> Option<&Skip> {
        match self {
            Outcome::Plan(_) => None,
            Outcome::Skip(skip) => Some(skip),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependency {
    pub mapping: String,
    pub key: String,
}

/// Why a mapping could not build its payload: the file, the line, the field, the expression,
/// the cause. The line is where the failing expression begins: jaq reports no position for
/// an error while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{file}{}: {field}: {message}{}", line.map(|l| format!(":{l}")).unwrap_or_default(), if expression.is_empty() { String::new() } else { format!(" (expression: {expression})") })]
pub struct TranslateError {
    pub mapping: String,
    pub file: String,
    pub line: Option<usize>,
    pub field: String,
    pub expression: String,
    pub message: String,
    /// When the payload broke its operation's schema: every violation, `pointer: message`
    /// (the message names the first).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schema_errors: Vec<String>,
    /// The expression failed while it ran, so the message may quote values of the body.
    /// Every other error (a schema violation, several values, an oversized payload) is
    /// about what the expressions yielded, which a projected body yields too.
    #[serde(skip)]
    pub evaluating: bool,
}

/// The mappings of one platform and topic.
#[derive(Debug, Default)]
struct Route {
    /// Indexes into [`Catalog::mappings`], in file order.
    mappings: Vec<usize>,
    /// What they may read of a body together: all that is parsed of it.
    demand: Demand,
}

/// `$vars` values by name.
pub type Vars = serde_json::Map<String, Value>;

#[derive(Debug)]
pub struct Catalog {
    mappings: Vec<Mapping>,
    routes: HashMap<(PlatformKind, String), Route>,
    /// For each source with `$vars` values of its own (its `vars` in `storehook.toml`): every
    /// mapping's `$vars` with the source's over them, by index into [`Catalog::mappings`],
    /// merged once here rather than for every webhook.
    source_vars: BTreeMap<String, Vec<Value>>,
    /// Parse bodies only as far as the routed mappings read them.
    project: bool,
    guards: Guards,
}

impl Catalog {
    /// Loads every `*.toml` below `dir` (sorted by path) but the tests beside them
    /// (`*.test.toml`, see [`is_test_file`]), with `$vars` expanded from the process
    /// environment. All problems of all files are returned together.
    pub fn load(dir: &Path) -> Result<Catalog, Vec<LoadError>> {
        Self::load_with_env(dir, &|name| std::env::var(name).ok())
    }

    pub fn load_with_env(
        dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Catalog, Vec<LoadError>> {
        let files = mapping_files(dir).map_err(|e| {
            vec![LoadError {
                file: dir.to_path_buf(),
                line: None,
                field: "(directory)".into(),
                expression: None,
                message: e.to_string(),
            }]
        })?;
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
        let mut routes: HashMap<(PlatformKind, String), Route> = HashMap::new();
        for (i, mapping) in mappings.iter().enumerate() {
            for topic in &mapping.topics {
                let route = routes.entry((mapping.platform, topic.clone())).or_default();
                route.mappings.push(i);
                for field in mapping.fields() {
                    route.demand.merge(field.expr.demand());
                }
            }
        }
        for route in routes.values_mut() {
            route.demand = std::mem::take(&mut route.demand).finished();
        }
        if mappings
            .iter()
            .flat_map(Mapping::fields)
            .any(|field| field.code.contains("phone("))
        {
            functions::load_phone_metadata();
        }
        Catalog {
            mappings,
            routes,
            source_vars: BTreeMap::new(),
            project: true,
            guards: Guards::default(),
        }
    }

    /// Gives the webhooks of each source these `$vars` values, over the mappings' own:
    /// one catalog serves shops that differ (currency, region, time zone).
    pub fn with_source_vars(mut self, source_vars: BTreeMap<String, Vars>) -> Self {
        self.source_vars = source_vars
            .into_iter()
            .map(|(source, over)| {
                let merged = self
                    .mappings
                    .iter()
                    .map(|mapping| {
                        let mut vars = mapping.vars.clone();
                        if let Value::Object(vars) = &mut vars {
                            vars.extend(over.iter().map(|(k, v)| (k.clone(), v.clone())));
                        }
                        vars
                    })
                    .collect();
                (source, merged)
            })
            .collect();
        self
    }

    pub fn with_guards(mut self, guards: Guards) -> Self {
        self.guards = guards;
        self
    }

    /// Whether a body is parsed only as far as the mappings routed to it read it (on by
    /// default). Off, every body is parsed whole: the same plans, slower.
    pub fn with_projection(mut self, on: bool) -> Self {
        self.project = on;
        self
    }

    /// Whether the mappings routed to a platform and topic read only part of a body, so
    /// that a body of theirs is parsed only as far as they read it.
    pub fn reads_part(&self, platform: PlatformKind, topic: &str) -> bool {
        self.route(platform, topic)
            .is_some_and(|route| !route.demand.is_whole())
    }

    fn route(&self, platform: PlatformKind, topic: &str) -> Option<&Route> {
        self.routes.get(&(platform, topic.to_string()))
    }

    pub fn mappings(&self) -> &[Mapping] {
        &self.mappings
    }

    /// The mappings routed to this platform and topic (whether or not their `when` holds).
    pub fn routed(&self, platform: PlatformKind, topic: &str) -> impl Iterator<Item = &Mapping> {
        self.route(platform, topic)
            .into_iter()
            .flat_map(|route| &route.mappings)
            .map(|&i| &self.mappings[i])
    }

    /// For each mapping routed to the webhook whose `when` holds: its plan or its skip, or
    /// why it failed.
    pub fn translate(&self, webhook: &Webhook<'_>) -> Vec<Result<Outcome, TranslateError>> {
        let Some(Route { mappings, demand }) = self.route(webhook.platform, webhook.topic) else {
            return Vec::new();
        };
        let routed = mappings.iter().map(|&i| &self.mappings[i]);
        let source_vars = self.source_vars.get(webhook.source);
        let projected = self.project && !demand.is_whole();
        let input = if webhook.body.len() > self.guards.max_input_bytes {
            Err(format!(
                "the webhook body ({} bytes) is larger than the {} bytes a mapping may read",
                webhook.body.len(),
                self.guards.max_input_bytes
            ))
        } else if projected {
            Input::parse_projected(webhook.body, demand)
        } else {
            Input::parse(webhook.body)
        };
        let input = match input {
            Ok(input) => input,
            Err(message) => {
                return routed
                    .map(|m| *error(m, "(input)", "", message.clone()))
                    .map(Err)
                    .collect();
            }
        };
        // Parsed only if a mapping's expression fails on the projected body, so that its
        // error quotes the body's real values.
        let mut whole = None;
        let headers = serde_json::to_value(webhook.headers).expect("a string map is JSON");
        let webhook_bindings = Bindings::new(webhook.topic, webhook.source, &headers, &Value::Null);
        mappings
            .iter()
            .filter_map(|&i| {
                let mapping = &self.mappings[i];
                let vars = source_vars.map_or(&mapping.vars, |merged| &merged[i]);
                let bindings = webhook_bindings.with_vars(vars);
                let mut result = apply(mapping, &input, &bindings, &self.guards);
                if projected && result.as_ref().is_err_and(|e| e.evaluating) {
                    let whole = whole.get_or_insert_with(|| Input::parse(webhook.body));
                    if let Ok(whole) = whole {
                        result = apply(mapping, whole, &bindings, &self.guards);
                    }
                }
                result.map_err(|e| *e).transpose()
            })
            .collect()
    }

    /// Why a webhook is stored `untranslated`, given the errors of its translation
    /// ([`Catalog::translate`]), in order: no mapping is routed to its topic, or the errors of
    /// the mappings that failed, one a line. `None` when it translates. Counts nothing.
    pub fn translation_error<'e>(
        &self,
        webhook: &Webhook<'_>,
        errors: impl IntoIterator<Item = &'e TranslateError>,
    ) -> Option<String> {
        if self
            .routed(webhook.platform, webhook.topic)
            .next()
            .is_none()
        {
            return Some(format!(
                "no mapping applies to {} topic {}",
                webhook.platform, webhook.topic
            ));
        }
        let errors: Vec<String> = errors.into_iter().map(ToString::to_string).collect();
        (!errors.is_empty()).then(|| errors.join("\n"))
    }

    /// The plans and skips a webhook the service takes in becomes, and why translation
    /// failed where it did ([`Catalog::translation_error`]). The receive path stores that
    /// error with the webhook; a re-translation (`replay --retranslate`, the admin API's)
    /// does too. Each mapping's outcome is counted in `storehook_translations_total`: call
    /// it for webhooks received or re-translated only. Trying mappings on a payload (the
    /// playground, a webhook's page, `check`, `translate`) uses [`Catalog::translate`] and
    /// [`Catalog::translation_error`], which count nothing.
    pub fn plans_and_error(&self, webhook: &Webhook<'_>) -> (Vec<Outcome>, Option<String>) {
        let mut plans = Vec::new();
        let mut errors = Vec::new();
        for result in self.translate(webhook) {
            match result {
                Ok(outcome) => {
                    let counted = match &outcome {
                        Outcome::Plan(_) => "plan",
                        Outcome::Skip(_) => "skip",
                    };
                    crate::observe::translated(outcome.mapping(), counted);
                    plans.push(outcome);
                }
                Err(err) => {
                    crate::observe::translated(&err.mapping, "error");
                    errors.push(err);
                }
            }
        }
        let error = self.translation_error(webhook, &errors);
        (plans, error)
    }
}

/// The name ending of a mapping's test file, written beside it: `salekit-audience.test.toml`
/// tests `salekit-audience.toml` (`storehook test`).
pub const TEST_FILE_SUFFIX: &str = ".test.toml";

/// Whether a file is a mapping's test file (`*.test.toml`) rather than a mapping.
pub fn is_test_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.ends_with(TEST_FILE_SUFFIX))
}

/// The mapping files below `dir`, sorted by path: every `*.toml` but the test files.
pub fn mapping_files(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files = files_below(dir, "toml")?;
    files.retain(|path| !is_test_file(path));
    Ok(files)
}

/// Every file below `dir` (recursively) whose extension is `extension`, sorted by path.
pub fn files_below(dir: &Path, extension: &str) -> std::io::Result<Vec<std::path::PathBuf>> {
    fn walk(dir: &Path, extension: &str, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, extension, out)?;
            } else if path.extension().is_some_and(|e| e == extension) {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, extension, &mut files)?;
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BASE: &str = r#"
description = "test"
platform    = "shopify"
topics      = ["orders/paid"]
destination = "hook"
operation   = "http.post"
key         = '.id'
"#;

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn load(text: &str) -> Result<Catalog, Vec<LoadError>> {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "shopify/m.toml", text);
        Catalog::load_with_env(dir.path(), &|name| {
            (name == "SET").then(|| "from-env".into())
        })
    }

    fn translate_one(catalog: &Catalog, body: Value) -> Vec<Result<Outcome, TranslateError>> {
        let headers = BTreeMap::new();
        let body = serde_json::to_vec(&body).unwrap();
        catalog.translate(&Webhook {
            source: "shop",
            platform: PlatformKind::Shopify,
            topic: "orders/paid",
            headers: &headers,
            body: &body,
        })
    }

    #[test]
    fn test_files_beside_the_mappings_are_not_mappings() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "shopify/m.toml", &format!("{BASE}[output]\n"));
        write(
            dir.path(),
            "shopify/m.test.toml",
            "[[case]]\nnot = 'a mapping'\n",
        );
        let catalog = Catalog::load_with_env(dir.path(), &|_| None).unwrap();
        let ids: Vec<_> = catalog.mappings().iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["shopify/m"]);
        assert!(is_test_file(Path::new("a/m.test.toml")));
        assert!(!is_test_file(Path::new("a/m.toml")));
        assert!(
            !is_test_file(Path::new("a/test.toml")),
            "a mapping named `test`"
        );
    }

    #[test]
    fn load_errors_name_the_file_line_field_and_expression() {
        let text = format!("{BASE}[output]\nok = '.id'\ntotal = '.total_price | mony'\n");
        let errors = load(&text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0];
        assert!(e.file.ends_with("shopify/m.toml"));
        assert_eq!(e.line, Some(10));
        assert_eq!(e.field, "output.total");
        assert_eq!(e.expression.as_deref(), Some(".total_price | mony"));
        assert!(e.message.contains("mony"), "{e}");
        assert!(e.to_string().contains("m.toml:10: output.total:"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_toml_are_errors_with_a_line() {
        let errors = load(&format!("{BASE}colour = 'x'\n[output]\n")).unwrap_err();
        assert!(errors[0].message.contains("colour"), "{:?}", errors[0]);
        assert!(errors[0].line.is_some());
        let errors = load(&format!("{BASE}[output\n")).unwrap_err();
        assert_eq!(errors[0].line, Some(8), "{:?}", errors[0]);
        let errors = load(&format!("{BASE}operation2 = 1\n[output]\n")).unwrap_err();
        assert!(errors[0].message.contains("operation2"));
    }

    #[test]
    fn a_bare_word_gets_a_quoting_hint() {
        let errors = load(&format!("{BASE}[output]\ncurrency = 'VND'\n")).unwrap_err();
        assert!(errors[0].message.contains(r#"'"VND"'"#), "{}", errors[0]);
    }

    #[test]
    fn vars_come_from_the_environment_or_their_default() {
        let text = format!(
            "{BASE}[vars]\na = \"${{SET}}\"\nb = \"${{UNSET:-fallback}}\"\nn = 3\n[output]\nv = '[$vars.a, $vars.b, $vars.n]'\n"
        );
        let catalog = load(&text).unwrap();
        let plans = translate_one(&catalog, json!({"id": 1}));
        assert_eq!(
            plans[0].as_ref().unwrap().plan().unwrap().payload["v"],
            json!(["from-env", "fallback", 3])
        );
        let errors = load(&format!("{BASE}[vars]\na = \"${{UNSET}}\"\n[output]\n")).unwrap_err();
        assert_eq!(errors[0].field, "vars.a");
        assert!(errors[0].message.contains("UNSET"));
    }

    #[test]
    fn a_sources_vars_override_the_mappings_own_for_its_webhooks_only() {
        let text = format!(
            "{BASE}[vars]\nregion = \"VN\"\nzone = \"Asia/Ho_Chi_Minh\"\n[output]\nv = '[$vars.region, $vars.zone, $vars.extra]'\n"
        );
        let over: Vars = serde_json::from_value(json!({"region": "IR", "extra": true})).unwrap();
        let catalog = load(&text)
            .unwrap()
            .with_source_vars([("shop-ir".to_string(), over)].into());
        let value = |source: &str| {
            let headers = BTreeMap::new();
            let body = serde_json::to_vec(&json!({"id": 1})).unwrap();
            let outcome = catalog
                .translate(&Webhook {
                    source,
                    platform: PlatformKind::Shopify,
                    topic: "orders/paid",
                    headers: &headers,
                    body: &body,
                })
                .remove(0)
                .unwrap();
            outcome.plan().unwrap().payload["v"].clone()
        };
        assert_eq!(value("shop-ir"), json!(["IR", "Asia/Ho_Chi_Minh", true]));
        assert_eq!(value("shop"), json!(["VN", "Asia/Ho_Chi_Minh", null]));
    }

    #[test]
    fn plans_carry_key_payload_and_bindings() {
        let text = format!(
            "{BASE}[output]\nsource = '$source'\ntopic = '$topic'\nfixed = 7\nmissing = '.nope'\n[output.nested]\nid = '.id | tostring'\n"
        );
        let catalog = load(&text).unwrap();
        let plans = translate_one(&catalog, json!({"id": 42}));
        let plan = plans[0].as_ref().unwrap().plan().unwrap();
        assert_eq!(plan.key, "42");
        assert_eq!(plan.mapping, "shopify/m");
        assert_eq!(plan.destination, "hook");
        assert_eq!(
            plan.payload,
            json!({"source": "shop", "topic": "orders/paid", "fixed": 7, "nested": {"id": "42"}}),
            "a null leaf is left out"
        );
    }

    #[test]
    fn when_must_be_boolean_and_false_means_no_plan() {
        let text = format!("{BASE}when = '.paid'\n[output]\n");
        let catalog = load(&text).unwrap();
        assert!(translate_one(&catalog, json!({"id": 1, "paid": false})).is_empty());
        assert_eq!(
            translate_one(&catalog, json!({"id": 1, "paid": true})).len(),
            1
        );
        let err = translate_one(&catalog, json!({"id": 1, "paid": "yes"}))
            .remove(0)
            .unwrap_err();
        assert_eq!(err.field, "when");
        assert!(err.message.contains("true or false"), "{err}");
    }

    #[test]
    fn the_first_skip_that_yields_a_reason_skips_the_webhook_with_it() {
        let text = format!(
            "{BASE}skip = ['if .test then \"a test order\" else null end', \
             'if .phone == null then \"no phone\" else false end']\n[output]\nall = '.phone'\n"
        );
        let catalog = load(&text).unwrap();
        let skipped = |body| match translate_one(&catalog, body).remove(0).unwrap() {
            Outcome::Skip(skip) => Some(skip),
            Outcome::Plan(_) => None,
        };
        let skip = skipped(json!({"id": 7, "test": true})).unwrap();
        assert_eq!(
            (
                skip.mapping.as_str(),
                skip.key.as_str(),
                skip.skipped.as_str()
            ),
            ("shopify/m", "7", "a test order")
        );
        assert_eq!(skip.operation, Operation::HttpPost);
        assert_eq!(
            serde_json::to_value(&skip).unwrap(),
            json!({"mapping": "shopify/m", "destination": "hook", "operation": "http.post",
                   "key": "7", "skipped": "a test order"})
        );
        assert_eq!(
            skipped(json!({"id": 7, "test": false})).unwrap().skipped,
            "no phone"
        );
        assert!(skipped(json!({"id": 7, "phone": "1"})).is_none(), "sent");

        let text = format!("{BASE}skip = '.flag'\n[output]\n");
        let catalog = load(&text).unwrap();
        for flag in [json!(true), json!(""), json!(3)] {
            let err = translate_one(&catalog, json!({"id": 1, "flag": flag}))
                .remove(0)
                .unwrap_err();
            assert_eq!(err.field, "skip");
            assert!(err.message.contains("reason to skip"), "{err}");
        }
        let errors = load(&format!("{BASE}skip = 3\n[output]\n")).unwrap_err();
        assert!(
            errors[0]
                .message
                .contains("a jq expression, or an array of them"),
            "{:?}",
            errors[0]
        );
        let errors = load(&format!("{BASE}skip = ['.a', '.b |']\n[output]\n")).unwrap_err();
        assert_eq!(errors[0].field, "skip[1]");
    }

    #[test]
    fn several_values_a_missing_key_and_a_schema_violation_are_errors() {
        let text = format!("{BASE}[output]\nids = '.items[].id'\n");
        let catalog = load(&text).unwrap();
        let err = translate_one(&catalog, json!({"id": 1, "items": [{"id": 1}, {"id": 2}]}))
            .remove(0)
            .unwrap_err();
        assert_eq!(err.field, "output.ids");
        assert!(err.message.contains("wrap it in [ … ]"), "{err}");
        let err = translate_one(&catalog, json!({"items": []}))
            .remove(0)
            .unwrap_err();
        assert_eq!(err.field, "key");

        let legion = BASE.replace("http.post", "legion.purchase_event");
        let text = format!(
            "{legion}[output]\nid = 'uuid5(\"x\"; \"y\")'\nevent_id = '2'\nmeta = '{{}}'\n[output.payload]\nusername = '.phone | phone(\"VN\"; \"national_no_zero\")'\n"
        );
        let catalog = load(&text).unwrap();
        let err = translate_one(&catalog, json!({"id": 1, "phone": null}))
            .remove(0)
            .unwrap_err();
        assert!(err.field.starts_with("output.payload."), "{err}");
        assert!(
            err.message.contains("legion.purchase_event schema"),
            "{err}"
        );
        let err = translate_one(&catalog, json!({"id": 1, "phone": "0912345678"}))
            .remove(0)
            .unwrap_err();
        assert_ne!(
            err.field, "output.payload.username",
            "the username is there now: {err}"
        );
    }

    #[test]
    fn a_missing_required_field_names_its_expression() {
        let salekit = BASE.replace("http.post", "salekit.upsert_audience");
        let text = format!("{salekit}[output]\nfull_name = '.name'\nemail = '.email'\n");
        let catalog = load(&text).unwrap();
        let err = translate_one(&catalog, json!({"id": 1, "name": "A"}))
            .remove(0)
            .unwrap_err();
        assert_eq!(err.field, "output.email");
        assert_eq!(err.expression, ".email");
        assert!(
            err.to_string().contains("m.toml:10: output.email:"),
            "{err}"
        );
    }

    #[test]
    fn needs_must_name_a_mapping_of_the_catalog() {
        let text =
            format!("{BASE}needs = {{ mapping = \"shopify/other\", key = '.id' }}\n[output]\n");
        let errors = load(&text).unwrap_err();
        assert_eq!(errors[0].field, "needs.mapping");
    }

    #[test]
    fn guards_bound_the_input_and_the_payload() {
        let text = format!("{BASE}[output]\nall = '.'\n");
        let catalog = load(&text).unwrap().with_guards(Guards {
            max_input_bytes: 64,
            max_payload_bytes: 32,
            ..Guards::default()
        });
        let err = translate_one(&catalog, json!({"id": 1, "pad": "x".repeat(100)}))
            .remove(0)
            .unwrap_err();
        assert!(err.message.contains("larger than"), "{err}");
        let err = translate_one(&catalog, json!({"id": 1, "pad": "x".repeat(30)}))
            .remove(0)
            .unwrap_err();
        assert!(err.message.contains("over the 32 allowed"), "{err}");
        let outcome = translate_one(&catalog, json!({"id": 1})).remove(0).unwrap();
        assert_eq!(outcome.plan().unwrap().payload_json, r#"{"all":{"id":1}}"#);
    }

    #[test]
    fn a_required_field_a_typo_leaves_out_is_an_error_naming_its_line_and_expression() {
        let text = format!(
            "{BASE}required = [\"email\", \"contact.phone\"]\n[output]\nemail = '.customer.emial'\n[output.contact]\nphone = '.phone'\n"
        );
        let catalog = load(&text).unwrap();
        let body = json!({"id": 1, "phone": "0912", "customer": {"email": "a@b.vn"}});
        let err = translate_one(&catalog, body).remove(0).unwrap_err();
        assert_eq!(err.field, "output.email");
        assert_eq!(err.expression, ".customer.emial");
        assert_eq!(err.line, Some(10));
        assert!(err.message.contains("the mapping's required"), "{err}");
        assert!(
            err.to_string().contains("m.toml:10: output.email:"),
            "{err}"
        );
        let err = translate_one(&catalog, json!({"id": 1, "customer": {"emial": "a@b.vn"}}))
            .remove(0)
            .unwrap_err();
        assert_eq!(err.field, "output.contact.phone", "{err}");

        let errors = load(&format!(
            "{BASE}required = [\"emial\"]\n[output]\nemail = '.email'\n"
        ))
        .unwrap_err();
        assert_eq!(errors[0].field, "required");
        assert!(
            errors[0].message.contains("`emial` is not a field"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn a_schema_inline_or_in_a_file_beside_the_mapping_is_enforced() {
        let inline = format!(
            "{BASE}[schema]\nrequired = [\"email\"]\nproperties.email = {{ type = \"string\", format = \"email\" }}\n[output]\nemail = '.email'\n"
        );
        let catalog = load(&inline).unwrap();
        assert!(translate_one(&catalog, json!({"id": 1, "email": "a@b.vn"}))[0].is_ok());
        let err = translate_one(&catalog, json!({"id": 1, "email": "not an address"}))
            .remove(0)
            .unwrap_err();
        assert_eq!(err.field, "output.email");
        assert!(err.message.contains("the mapping's schema"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let text = format!("{BASE}schema = \"m.schema.json\"\n[output]\nid = '.id'\n");
        write(dir.path(), "shopify/m.toml", &text);
        let err = Catalog::load_with_env(dir.path(), &|_| None).unwrap_err();
        assert_eq!(err[0].field, "schema");
        assert!(
            err[0].message.contains("cannot read the schema file"),
            "{}",
            err[0]
        );
        write(
            dir.path(),
            "shopify/m.schema.json",
            r#"{"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}"#,
        );
        let catalog = Catalog::load_with_env(dir.path(), &|_| None).unwrap();
        assert_eq!(
            catalog.mappings().len(),
            1,
            "the schema file is not a mapping"
        );
        let err = translate_one(&catalog, json!({"id": "1"}))
            .remove(0)
            .unwrap_err();
        assert!(
            err.message.contains("the mapping's schema m.schema.json"),
            "{err}"
        );
        write(dir.path(), "shopify/m.schema.json", r#"{"type": 5}"#);
        let err = Catalog::load_with_env(dir.path(), &|_| None).unwrap_err();
        assert!(
            err[0].message.contains("not a valid JSON Schema"),
            "{}",
            err[0]
        );
    }

    #[test]
    fn a_multi_line_expression_reports_the_line_of_its_failing_part() {
        let text = format!("{BASE}[output]\ntotal = '''\n.total_price\n| tonumber\n| mony\n'''\n");
        let errors = load(&text).unwrap_err();
        assert_eq!(errors[0].field, "output.total");
        assert_eq!(errors[0].line, Some(12), "{}", errors[0]);
        assert!(errors[0].message.contains("mony"), "{}", errors[0]);

        let text = format!("{BASE}[output]\ntotal = '''\n.total_price\n| tonumber\n'''\n");
        let catalog = load(&text).unwrap();
        let err = translate_one(&catalog, json!({"id": 1, "total_price": "abc"}))
            .remove(0)
            .unwrap_err();
        assert_eq!(err.line, Some(10), "where the expression begins: {err}");
        assert!(
            err.to_string().contains("m.toml:10: output.total:"),
            "{err}"
        );
    }

    #[test]
    fn a_catalog_is_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Catalog>();
    }
}
