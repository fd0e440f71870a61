//! The storefront kinds storehook receives webhooks from.

use serde::{Deserialize, Serialize};

use super::words::words;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Deserialize,
    Serialize,
    clap::ValueEnum,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PlatformKind {
    Haravan,
    #[value(name = "woocommerce")]
    WooCommerce,
    Shopify,
}

words!(
    PlatformKind,
    "platform",
    [
        Haravan = "haravan",
        WooCommerce = "woocommerce",
        Shopify = "shopify",
    ]
);
