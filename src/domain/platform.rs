//! The storefront kinds storehook receives webhooks from.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PlatformKind {
    Haravan,
    #[value(name = "woocommerce")]
    WooCommerce,
    Shopify,
}

impl PlatformKind {
    pub const ALL: [PlatformKind; 3] = [Self::Haravan, Self::WooCommerce, Self::Shopify];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Haravan => "haravan",
            Self::WooCommerce => "woocommerce",
            Self::Shopify => "shopify",
        }
    }
}

impl std::fmt::Display for PlatformKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PlatformKind {
    type Err = super::UnknownWord;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| super::UnknownWord::new("platform", text, Self::ALL.map(Self::as_str)))
    }
}
