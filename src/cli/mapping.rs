//! `storehook check` and `storehook translate`: mapping files against recorded webhooks;
//! what they share with `storehook test`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use crate::config::Config;
use crate::domain::PlatformKind;
use crate::fixture::Fixture;
use crate::mapping::{Catalog, LoadError, Outcome, Webhook, files_below};

/// Loads the catalog with the configuration's per-source values, printing every load error;
/// `None` when there was any.
pub(super) fn load_catalog(dir: &Path, config: &Config) -> Option<Catalog> {
    match Catalog::load(dir) {
        Ok(catalog) => Some(catalog.with_source_vars(config.source_vars())),
        Err(errors) => {
            print_load_errors(&errors);
            None
        }
    }
}

fn print_load_errors(errors: &[LoadError]) {
    for error in errors {
        eprintln!("error: {error}");
    }
    eprintln!("{} error(s) in the mapping files", errors.len());
}

/// A recorded webhook with what translation needs to know about it.
pub(super) struct Recorded {
    fixture: Fixture,
    platform: PlatformKind,
    topic: String,
    headers: BTreeMap<String, String>,
}

impl Recorded {
    pub(super) fn new(
        fixture: Fixture,
        platform: PlatformKind,
        topic: Option<&str>,
    ) -> anyhow::Result<Self> {
        let topic_header = crate::source::platform(platform).topic_header();
        let topic = match topic {
            Some(topic) => topic.to_string(),
            None => fixture
                .header(topic_header)
                .map(str::to_string)
                .with_context(|| {
                    format!(
                        "{} records no {topic_header} header: pass --topic",
                        fixture.path.display()
                    )
                })?,
        };
        let headers = fixture
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
            .collect();
        Ok(Self {
            fixture,
            platform,
            topic,
            headers,
        })
    }

    pub(super) fn webhook<'a>(&'a self, source: &'a str) -> Webhook<'a> {
        Webhook {
            source,
            platform: self.platform,
            topic: &self.topic,
            headers: &self.headers,
            body: &self.fixture.body,
        }
    }
}

/// The platform a fixture belongs to, from the directory it sits in.
fn platform_of_path(path: &Path) -> Option<PlatformKind> {
    let dir = path.parent()?.file_name()?.to_str()?;
    PlatformKind::ALL.into_iter().find(|p| p.as_str() == dir)
}

/// The source a webhook of `platform` is translated as: `chosen` (`--source`) when it is
/// of that platform, else the one the fixture names, else the platform's name. A source
/// that is not in the configuration, or of another platform, is an error.
pub(super) fn source_of<'a>(
    config: &Config,
    platform: PlatformKind,
    chosen: Option<&'a str>,
    fixture: &'a Fixture,
) -> anyhow::Result<&'a str> {
    let of_platform = |id: &str| config.sources.get(id).map(|s| s.platform);
    if let Some(id) = chosen
        && of_platform(id) == Some(platform)
    {
        return Ok(id);
    }
    match fixture.source.as_deref() {
        None => Ok(platform.as_str()),
        Some(id) => match of_platform(id) {
            Some(p) if p == platform => Ok(id),
            Some(p) => bail!(
                "{} names source `{id}`, which is a {p} source in {}",
                fixture.path.display(),
                config.origin
            ),
            None => bail!(
                "{} names source `{id}`, which {} does not have",
                fixture.path.display(),
                config.origin
            ),
        },
    }
}

pub fn check(
    config: &Config,
    mappings: &Path,
    fixtures: &Path,
    source: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if let Some(id) = source
        && !config.sources.contains_key(id)
    {
        bail!("no source `{id}` in {}", config.origin);
    }
    let Some(catalog) = load_catalog(mappings, config) else {
        return Ok(ExitCode::FAILURE);
    };
    // The configuration and the mappings together: every mapping's destination configured,
    // of a kind that performs its operation.
    let wiring = crate::app::wiring_problems(config, &catalog);
    for problem in &wiring {
        eprintln!("error: {problem}");
    }
    let paths = files_below(fixtures, "json")
        .with_context(|| format!("cannot read fixtures from {}", fixtures.display()))?;

    let mut errors = wiring.len();
    let (mut plans, mut skips) = (0usize, 0usize);
    let mut used = vec![false; catalog.mappings().len()];
    say!("{:<48} {:<36} result", "fixture", "mapping");
    for path in &paths {
        let Some(platform) = platform_of_path(path) else {
            continue;
        };
        let shown = path
            .strip_prefix(fixtures)
            .unwrap_or(path)
            .display()
            .to_string();
        let recorded = Fixture::load(path).and_then(|fixture| {
            let source = source_of(config, platform, source, &fixture)?.to_string();
            Ok((Recorded::new(fixture, platform, None)?, source))
        });
        let (recorded, source) = match recorded {
            Ok(recorded) => recorded,
            Err(err) => {
                errors += 1;
                say!("{shown:<48} {:<36} ERROR {err:#}", "-");
                continue;
            }
        };
        let routed: Vec<_> = catalog
            .routed(platform, &recorded.topic)
            .map(|m| m.id.clone())
            .collect();
        if routed.is_empty() {
            say!("{shown:<48} {:<36} no mapping for {}", "-", recorded.topic);
        }
        let results = catalog.translate(&recorded.webhook(&source));
        for id in &routed {
            let index = catalog
                .mappings()
                .iter()
                .position(|m| &m.id == id)
                .expect("routed");
            let result = results.iter().find(|r| match r {
                Ok(outcome) => outcome.mapping() == id,
                Err(err) => &err.mapping == id,
            });
            let text = match result {
                None => "does not apply (when is false)".to_string(),
                Some(Ok(Outcome::Plan(plan))) => {
                    plans += 1;
                    used[index] = true;
                    format!("ok  → {} key {}", plan.operation, plan.key)
                }
                Some(Ok(Outcome::Skip(skip))) => {
                    skips += 1;
                    format!("skip key {}: {}", skip.key, skip.skipped)
                }
                Some(Err(err)) => {
                    errors += 1;
                    format!("ERROR {err}")
                }
            };
            say!("{shown:<48} {id:<36} {text}");
        }
    }
    for (mapping, used) in catalog.mappings().iter().zip(&used) {
        if !used {
            say!("note: no fixture produced a plan with {}", mapping.id);
        }
    }
    say!(
        "{} mappings, {} fixtures, {plans} plans, {skips} skips, {errors} errors",
        catalog.mappings().len(),
        paths.len()
    );
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub struct TranslateArgs<'a> {
    pub file: &'a Path,
    pub mappings: &'a Path,
    pub platform: Option<PlatformKind>,
    pub topic: Option<&'a str>,
    pub source: Option<&'a str>,
}

pub fn translate(config: &Config, args: TranslateArgs<'_>) -> anyhow::Result<ExitCode> {
    let Some(catalog) = load_catalog(args.mappings, config) else {
        return Ok(ExitCode::FAILURE);
    };
    let platform = match (args.platform, args.source) {
        (Some(platform), _) => platform,
        (None, Some(source)) => {
            config
                .sources
                .get(source)
                .with_context(|| format!("no source `{source}` in {}", config.origin))?
                .platform
        }
        (None, None) => match platform_of_path(args.file) {
            Some(platform) => platform,
            None => bail!(
                "cannot tell the platform of {}: pass --platform or --source",
                args.file.display()
            ),
        },
    };
    let fixture = Fixture::load(args.file)?;
    let source = match args.source {
        Some(source) => source.to_string(),
        None => source_of(config, platform, None, &fixture)?.to_string(),
    };
    let recorded = Recorded::new(fixture, platform, args.topic)?;
    let results = catalog.translate(&recorded.webhook(&source));
    let mut failed = false;
    let mut outcomes = Vec::new();
    for result in results {
        match result {
            Ok(outcome) => outcomes.push(outcome),
            Err(err) => {
                failed = true;
                eprintln!("error: {err}");
            }
        }
    }
    say!("{}", serde_json::to_string_pretty(&outcomes)?);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
