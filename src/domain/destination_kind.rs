//! The kinds of target service a destination can be.

/// A destination's kind, as `storehook.toml` names it (`kind = "legion"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DestinationKind {
    Legion,
    Scalef,
    Salekit,
    /// Any JSON API: each credential names a header.
    Http,
}

impl DestinationKind {
    pub const ALL: [DestinationKind; 4] = [Self::Legion, Self::Scalef, Self::Salekit, Self::Http];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Legion => "legion",
            Self::Scalef => "scalef",
            Self::Salekit => "salekit",
            Self::Http => "http",
        }
    }

    /// The credentials a destination of this kind reads, by name; `None` for `http`, which
    /// takes any (each names a header). A name it does not read is a typo, and one it reads
    /// but is not configured would fail every delivery: both stop the start.
    pub const fn credential_names(self) -> Option<&'static [&'static str]> {
        match self {
            Self::Legion => Some(&["api_key"]),
            Self::Scalef => Some(&["user", "access_token"]),
            Self::Salekit => Some(&["token"]),
            Self::Http => None,
        }
    }
}

impl std::fmt::Display for DestinationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DestinationKind {
    type Err = super::UnknownWord;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| {
                super::UnknownWord::new("destination kind", text, Self::ALL.map(Self::as_str))
            })
    }
}
