//! A recorded webhook: a body file (`NAME.json`, byte-exact) and, beside it, the headers it
//! arrived with (`NAME.headers`, one `Name: value` a line) and, when it belongs to a source
//! of the configuration with values of its own, that source's id (`NAME.source`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;

pub struct Fixture {
    pub path: PathBuf,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    /// The source it came from (`NAME.source`), when it names one.
    pub source: Option<String>,
}

impl Fixture {
    /// Reads the body, and the headers file when there is one.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let body =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let headers_path = path.with_extension("headers");
        let headers = if headers_path.exists() {
            let text = std::fs::read_to_string(&headers_path)
                .with_context(|| format!("cannot read {}", headers_path.display()))?;
            parse_headers(&text)
                .with_context(|| format!("invalid headers file {}", headers_path.display()))?
        } else {
            Vec::new()
        };
        let source_path = path.with_extension("source");
        let source = if source_path.exists() {
            let text = std::fs::read_to_string(&source_path)
                .with_context(|| format!("cannot read {}", source_path.display()))?;
            Some(text.trim().to_string()).filter(|id| !id.is_empty())
        } else {
            None
        };
        Ok(Self {
            path: path.to_path_buf(),
            body,
            headers,
            source,
        })
    }

    /// A recorded header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The `Name: value` lines of a headers file (blank lines ignored).
pub fn parse_headers(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let (name, value) = line
                .split_once(':')
                .with_context(|| format!("line {}: expected `Name: value`", i + 1))?;
            Ok((name.trim().to_string(), value.trim().to_string()))
        })
        .collect()
}
