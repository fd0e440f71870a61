//! Haravan (Vietnam), modelled on Shopify: a signature header with two spellings in the wild,
//! a subscription handshake, and no delivery id.

use std::collections::BTreeMap;

use super::BodyFields;
use axum::http::HeaderMap;

use super::{
    Platform, PlatformKind, SubscriptionRequest, body_hash_id, header_text, order_update_id,
};

pub struct Haravan;

/// The spelling in Haravan's documentation, then the one much client code uses.
const SIGNATURE_HEADERS: &[&str] = &["X-Haravan-Hmacsha256", "X-Haravan-Hmac-Sha256"];
const TOPIC_HEADER: &str = "X-Haravan-Topic";
const ORG_ID_HEADER: &str = "X-Haravan-Org-Id";

impl Platform for Haravan {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Haravan
    }
    fn signature_headers(&self) -> &'static [&'static str] {
        SIGNATURE_HEADERS
    }
    fn topic_header(&self) -> &'static str {
        TOPIC_HEADER
    }
    fn delivery_id_header(&self) -> Option<&'static str> {
        None
    }
    fn header_prefix(&self) -> &'static str {
        "x-haravan-"
    }
    fn known_topics(&self) -> &'static [&'static str] {
        &[
            "orders/create",
            "orders/updated",
            "orders/paid",
            "orders/cancelled",
            "orders/fulfilled",
            "orders/delete",
            "customers/create",
            "customers/update",
            "app/uninstalled",
        ]
    }
    fn subscription_request(
        &self,
        query: &BTreeMap<String, String>,
    ) -> Option<SubscriptionRequest> {
        if query.get("hub.mode").map(String::as_str) != Some("subscribe") {
            return None;
        }
        Some(SubscriptionRequest {
            verify_token: query.get("hub.verify_token").cloned().unwrap_or_default(),
            challenge: query.get("hub.challenge").cloned().unwrap_or_default(),
        })
    }
    /// Haravan sends no delivery id: one order update is (shop, topic, order id, `updated_at`).
    fn dedupe_id(&self, headers: &HeaderMap, topic: &str, body: &BodyFields, raw: &[u8]) -> String {
        let org = header_text(headers, ORG_ID_HEADER).unwrap_or("-");
        order_update_id(topic, &format!("{org}:"), body, "updated_at")
            .unwrap_or_else(|| body_hash_id(topic, raw))
    }
}
