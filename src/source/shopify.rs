//! Shopify and Shopify-style shops: every delivery of one event carries the same
//! `X-Shopify-Event-Id`, which is what duplicates are recognised by.

use super::BodyFields;
use axum::http::HeaderMap;

use super::{Platform, PlatformKind, body_hash_id, header_text};

pub struct Shopify;

const EVENT_ID_HEADER: &str = "X-Shopify-Event-Id";

impl Platform for Shopify {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Shopify
    }
    fn signature_headers(&self) -> &'static [&'static str] {
        &["X-Shopify-Hmac-Sha256"]
    }
    fn topic_header(&self) -> &'static str {
        "X-Shopify-Topic"
    }
    fn delivery_id_header(&self) -> Option<&'static str> {
        Some("X-Shopify-Webhook-Id")
    }
    fn header_prefix(&self) -> &'static str {
        "x-shopify-"
    }
    fn known_topics(&self) -> &'static [&'static str] {
        &[
            "orders/create",
            "orders/updated",
            "orders/paid",
            "orders/cancelled",
            "orders/fulfilled",
            "orders/partially_fulfilled",
            "orders/edited",
            "orders/delete",
            "refunds/create",
            "customers/create",
            "customers/update",
            "customers/delete",
            "app/uninstalled",
        ]
    }
    fn dedupe_id(
        &self,
        headers: &HeaderMap,
        topic: &str,
        _body: &BodyFields,
        raw: &[u8],
    ) -> String {
        match header_text(headers, EVENT_ID_HEADER) {
            // With the topic: one change of an order can trigger the webhooks of several
            // topics (`orders/updated` and `orders/paid`), and whether they share an event id
            // is not documented; a repeat of one webhook always has its topic.
            Some(event_id) => format!("event:{topic}:{event_id}"),
            None => body_hash_id(topic, raw),
        }
    }
}
