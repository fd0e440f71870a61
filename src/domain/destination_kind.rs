//! The kinds of target service a destination can be.

use super::words::words;

/// A destination's kind, as `storehook.toml` names it (`kind = "legion"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DestinationKind {
    Legion,
    Scalef,
    Salekit,
    /// Any JSON API: each credential names a header.
    Http,
}

words!(
    DestinationKind,
    "destination kind",
    [
        Legion = "legion",
        Scalef = "scalef",
        Salekit = "salekit",
        Http = "http",
    ]
);

impl DestinationKind {
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

    /// The `settings` a destination of this kind reads (paths, ids: never secrets); any
    /// other is a typo and stops the start. `http` reads none: its headers have a table of
    /// their own.
    pub const fn setting_names(self) -> &'static [&'static str] {
        match self {
            Self::Scalef => &["create_path", "status_path", "network_id"],
            Self::Legion | Self::Salekit | Self::Http => &[],
        }
    }
}
