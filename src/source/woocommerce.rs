//! WooCommerce (WordPress): signed like the others, but greets a new webhook with an unsigned
//! ping that must get exactly 200, and repeats `order.updated` for every change of an order.

use super::BodyFields;
use axum::http::HeaderMap;

use super::{Platform, PlatformKind, body_hash, body_hash_id, order_update_id};

pub struct WooCommerce;

const SIGNATURE_HEADER: &str = "X-WC-Webhook-Signature";
const TOPIC_HEADER: &str = "X-WC-Webhook-Topic";
const HEADER_PREFIX: &str = "x-wc-webhook-";

impl Platform for WooCommerce {
    fn kind(&self) -> PlatformKind {
        PlatformKind::WooCommerce
    }
    fn signature_headers(&self) -> &'static [&'static str] {
        &[SIGNATURE_HEADER]
    }
    fn topic_header(&self) -> &'static str {
        TOPIC_HEADER
    }
    /// A per-second hash: fine for logs, useless for deduplication.
    fn delivery_id_header(&self) -> Option<&'static str> {
        Some("X-WC-Webhook-Delivery-ID")
    }
    fn header_prefix(&self) -> &'static str {
        HEADER_PREFIX
    }
    fn known_topics(&self) -> &'static [&'static str] {
        &[
            "order.created",
            "order.updated",
            "order.deleted",
            "order.restored",
            "customer.created",
            "customer.updated",
            "customer.deleted",
            "product.created",
            "product.updated",
            "product.deleted",
            "product.restored",
            "coupon.created",
            "coupon.updated",
            "coupon.deleted",
            "coupon.restored",
        ]
    }
    /// The ping: body `webhook_id=N` and none of the `X-WC-Webhook-*` headers.
    fn is_unsigned_ping(&self, headers: &HeaderMap, body: &[u8]) -> bool {
        let digits = body.strip_prefix(b"webhook_id=").unwrap_or_default();
        !digits.is_empty()
            && digits.iter().all(u8::is_ascii_digit)
            && !headers
                .keys()
                .any(|name| name.as_str().starts_with(HEADER_PREFIX))
    }
    /// One order change is (topic, order id, `date_modified_gmt`, the body's hash): a
    /// repeated delivery of it shares the id, the next change of the same order does not.
    /// `date_modified_gmt` counts whole seconds, so two changes in one second (a payment
    /// plugin setting `processing`, then `completed`) share it; their bodies differ.
    fn dedupe_id(
        &self,
        _headers: &HeaderMap,
        topic: &str,
        body: &BodyFields,
        raw: &[u8],
    ) -> String {
        match order_update_id(topic, "", body, "date_modified_gmt") {
            Some(id) => format!("{id}:{}", body_hash(raw)),
            None => body_hash_id(topic, raw),
        }
    }
}
