//! The live mappings: what the receive path translates with, listing them with the problems
//! of the files on disk, and loading them again while the service runs (`SIGHUP`, the admin
//! API, the dashboard, another instance's announcement of one).

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::config::Config;
use crate::domain::{Operation, PlatformKind};
use crate::mapping::Catalog;

/// The mappings the receive path translates with, and how to load them again while the
/// service runs (`SIGHUP`, and whatever else asks for it).
#[derive(Clone)]
pub struct Mappings {
    live: Arc<ArcSwap<Catalog>>,
    /// The configuration the service started with: the directory, each source's values, the
    /// destinations the mappings must name.
    config: Arc<Config>,
}

impl Mappings {
    /// `catalog` live, reloaded from `config`'s mappings directory.
    pub fn new(catalog: Catalog, config: Arc<Config>) -> Mappings {
        Mappings {
            live: Arc::new(ArcSwap::from_pointee(catalog)),
            config,
        }
    }

    /// The live catalog, swapped by each reload: the receive path holds it.
    pub fn live(&self) -> Arc<ArcSwap<Catalog>> {
        self.live.clone()
    }

    /// The mappings directory.
    pub fn dir(&self) -> &str {
        &self.config.mappings_dir
    }

    /// Loads the mappings directory again. When every file loads and every mapping names a
    /// configured destination that performs its operation, the new catalog is live for the
    /// next webhook and the count of its mappings is returned; otherwise the catalog in force
    /// stays, and the error lists every problem.
    pub fn reload(&self) -> Result<usize, String> {
        let dir = Path::new(&self.config.mappings_dir);
        if !dir.is_dir() {
            return Err(format!("mappings directory {} not found", dir.display()));
        }
        let catalog = Catalog::load(dir)
            .map_err(|errors| {
                let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
                format!(
                    "{} error(s) in the mapping files:\n{}",
                    errors.len(),
                    listed.join("\n")
                )
            })?
            .with_source_vars(self.config.source_vars());
        let problems = wiring_problems(&self.config, &catalog);
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        let count = catalog.mappings().len();
        self.live.store(Arc::new(catalog));
        Ok(count)
    }

    /// How many mappings are live.
    pub fn count(&self) -> usize {
        self.live.load().mappings().len()
    }
}

/// A live mapping, as an operator lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MappingInfo {
    /// The path below the mappings directory without `.toml`: `haravan/legion-purchase`.
    pub id: String,
    pub file: String,
    pub description: String,
    pub platform: PlatformKind,
    pub topics: Vec<String>,
    pub destination: String,
    pub operation: Operation,
}

/// The live mappings, and what keeps the files on disk from loading now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MappingsListed {
    pub dir: String,
    /// The mappings in force, in file order.
    pub live: Vec<MappingInfo>,
    /// The problems of the files as they are on disk now (a load error, a destination not
    /// configured), one a line: a reload would fail with these, and the live ones stay.
    /// Empty when a reload would succeed.
    pub errors: Vec<String>,
}

impl Mappings {
    /// The live mappings, with the problems a reload of the directory would meet now.
    pub fn list(&self) -> MappingsListed {
        let live = self
            .live
            .load()
            .mappings()
            .iter()
            .map(|m| MappingInfo {
                id: m.id.clone(),
                file: m.file.display().to_string(),
                description: m.description.clone(),
                platform: m.platform,
                topics: m.topics.clone(),
                destination: m.destination.clone(),
                operation: m.operation,
            })
            .collect();
        let dir = Path::new(&self.config.mappings_dir);
        let errors = if !dir.is_dir() {
            vec![format!("mappings directory {} not found", dir.display())]
        } else {
            match Catalog::load(dir) {
                Ok(catalog) => wiring_problems(&self.config, &catalog),
                Err(errors) => errors.iter().map(ToString::to_string).collect(),
            }
        };
        MappingsListed {
            dir: self.config.mappings_dir.clone(),
            live,
            errors,
        }
    }
}

/// What keeps the configuration and the mappings from working together, one line each: a
/// mapping whose destination is not configured, or whose destination's kind cannot perform
/// its operation (a kind this build does not have stops the configuration's load). `serve` refuses to
/// start on any; `check` reports them.
pub fn wiring_problems(config: &Config, catalog: &Catalog) -> Vec<String> {
    let mut problems = Vec::new();
    for mapping in catalog.mappings() {
        match config.destinations.get(&mapping.destination) {
            None => problems.push(format!(
                "{}: destination `{}` is not configured in {} (configured: {})",
                mapping.file.display(),
                mapping.destination,
                config.origin,
                config
                    .destinations
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Some(d) if mapping.operation.destination_kind() != d.kind.as_str() => {
                problems.push(format!(
                    "{}: destination `{}` is a {} destination, which does not perform {}",
                    mapping.file.display(),
                    mapping.destination,
                    d.kind,
                    mapping.operation
                ))
            }
            Some(_) => {}
        }
    }
    problems
}
