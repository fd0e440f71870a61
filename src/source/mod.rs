//! The Platform seam: how each storefront kind signs its webhooks, names their topic, greets
//! us (handshakes) and repeats itself (deduplication). Adding a platform is one file here plus
//! one variant of [`PlatformKind`].

mod fields;
mod haravan;
mod shopify;
mod woocommerce;

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};

use serde_json::Value;

pub use fields::BodyFields;
use sha2::{Digest, Sha256};

use crate::domain::{PlatformKind, Secret};

type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 tag; a decoded signature header of any other length is refused
/// before any HMAC is computed.
const SIGNATURE_LEN: usize = 32;

/// What the storefront kind `kind` sends.
pub fn platform(kind: PlatformKind) -> &'static dyn Platform {
    match kind {
        PlatformKind::Haravan => &haravan::Haravan,
        PlatformKind::WooCommerce => &woocommerce::WooCommerce,
        PlatformKind::Shopify => &shopify::Shopify,
    }
}

/// A subscription handshake (`GET …?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C`).
#[derive(Debug, PartialEq, Eq)]
pub struct SubscriptionRequest {
    pub verify_token: String,
    pub challenge: String,
}

/// What one storefront kind sends. Implementations hold no state: header names are constants.
pub trait Platform: Send + Sync {
    fn kind(&self) -> PlatformKind;
    /// The headers that may carry the signature, tried in this order; the first is the one
    /// `storehook send` writes.
    fn signature_headers(&self) -> &'static [&'static str];
    fn topic_header(&self) -> &'static str;
    /// The header naming one delivery attempt, for log lines; `None` where there is none.
    fn delivery_id_header(&self) -> Option<&'static str>;
    /// The prefix (lowercase) of the platform's own headers; those are kept with the webhook.
    fn header_prefix(&self) -> &'static str;
    /// Topics this platform is known to send; others are accepted and logged.
    fn known_topics(&self) -> &'static [&'static str];
    /// An unsigned greeting that must be answered 200 before any signature check
    /// (WooCommerce's ping). Nothing is stored for it.
    fn is_unsigned_ping(&self, _headers: &HeaderMap, _body: &[u8]) -> bool {
        false
    }
    /// A `GET` subscription handshake, when the platform has one and the query is one.
    fn subscription_request(
        &self,
        _query: &BTreeMap<String, String>,
    ) -> Option<SubscriptionRequest> {
        None
    }
    /// The id under which repeated deliveries of one event are recognised (unique per source).
    fn dedupe_id(&self, headers: &HeaderMap, topic: &str, body: &BodyFields, raw: &[u8]) -> String;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no signature header ({expected})")]
    Missing { expected: String },
    #[error("signature header {header} is not base64")]
    NotBase64 { header: &'static str },
    #[error("signature header {header} decodes to {len} bytes, not {SIGNATURE_LEN}")]
    WrongLength { header: &'static str, len: usize },
    #[error("signature in {header} does not match the body with any configured secret")]
    Mismatch { header: &'static str },
}

/// Finds the platform's signature header and checks it against `body` with each secret.
/// The header is decoded and length-checked first; the tags are compared in constant time.
pub fn verify_signature(
    platform: &dyn Platform,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[Secret],
) -> Result<(), SignatureError> {
    let (header, value) = platform
        .signature_headers()
        .iter()
        .find_map(|name| headers.get(*name).map(|v| (*name, v)))
        .ok_or_else(|| SignatureError::Missing {
            expected: platform.signature_headers().join(" or "),
        })?;
    let tag = STANDARD
        .decode(value.as_bytes().trim_ascii())
        .map_err(|_| SignatureError::NotBase64 { header })?;
    if tag.len() != SIGNATURE_LEN {
        return Err(SignatureError::WrongLength {
            header,
            len: tag.len(),
        });
    }
    let matches = secrets.iter().any(|secret| {
        let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(body);
        mac.verify_slice(&tag).is_ok()
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch { header })
    }
}

/// `base64(HMAC-SHA256(secret, body))`: the signature all three platforms send.
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The headers a platform would send with `body`: `recorded` (as captured with a fixture)
/// without any old signature, the topic replaced when one is given, and a fresh signature.
pub fn signed_headers(
    platform: &dyn Platform,
    recorded: &[(String, String)],
    body: &[u8],
    secret: &Secret,
    topic: Option<&str>,
) -> Vec<(String, String)> {
    let replaced = |name: &str| {
        platform
            .signature_headers()
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
            || (topic.is_some() && name.eq_ignore_ascii_case(platform.topic_header()))
            || name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("host")
    };
    let mut out: Vec<(String, String)> = recorded
        .iter()
        .filter(|(name, _)| !replaced(name))
        .cloned()
        .collect();
    if !out
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        out.insert(0, ("Content-Type".into(), "application/json".into()));
    }
    if let Some(topic) = topic {
        out.push((platform.topic_header().to_string(), topic.to_string()));
    }
    out.push((
        platform.signature_headers()[0].to_string(),
        sign(secret, body),
    ));
    out
}

/// The headers kept with a stored webhook: the platform's own, the content type and the
/// user agent. Names are lowercase.
pub fn kept_headers(platform: &dyn Platform, headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            name.starts_with(platform.header_prefix())
                || name == "content-type"
                || name == "user-agent"
        })
        .filter_map(|(name, value)| {
            value
                .to_str()
                .ok()
                .map(|v| (name.as_str().to_string(), v.to_string()))
        })
        .collect()
}

/// A header's value as text, when present and printable.
pub fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// A JSON id or timestamp as text: strings as they are, numbers in their JSON form.
fn scalar_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The dedupe id of an order event from its parts, when the body has the order id and its
/// update time: two deliveries of the same update share it, a new update of the same order
/// does not.
fn order_update_id(
    topic: &str,
    scope: &str,
    body: &BodyFields,
    updated_field: &str,
) -> Option<String> {
    let id = scalar_text(body.get("id"))?;
    let updated = scalar_text(body.get(updated_field))?;
    Some(format!("{topic}:{scope}{id}:{updated}"))
}

/// The dedupe id of a body alone (where it has no better one).
fn body_hash_id(topic: &str, raw: &[u8]) -> String {
    format!("{topic}:sha256:{}", body_hash(raw))
}

/// The body's SHA-256, base64url.
fn body_hash(raw: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn published_vectors() {
        let secret = Secret::new("the shared secret key here");
        assert_eq!(
            sign(&secret, b"the message to hash here"),
            "RkOXiWX/zsbm1zs2o5rkPOsV9++BMbgweGLrxWDn+Yg="
        );
        let body = br#"{"id":1234567890,"email":"customer@example.com","total_price":"123.45"}"#;
        let shopify = platform(PlatformKind::Shopify);
        let h = headers(&[(
            "x-shopify-hmac-sha256",
            "QNyObTlKbMx2qDlPF/ZOZcBqg5OgPg+2oky3zldc0Gw=",
        )]);
        assert_eq!(
            verify_signature(shopify, &h, body, &[Secret::new("test-webhook-secret")]),
            Ok(())
        );
        let h = headers(&[(
            "x-shopify-hmac-sha256",
            "RkOXiWX/zsbm1zs2o5rkPOsV9++BMbgweGLrxWDn+Yg=",
        )]);
        assert_eq!(
            verify_signature(
                shopify,
                &h,
                b"the message to hash here",
                &[Secret::new("the shared secret key here")]
            ),
            Ok(())
        );
    }

    #[test]
    fn refusals_name_the_header_and_never_the_secret() {
        let platform = platform(PlatformKind::Haravan);
        let secrets = [Secret::new("s3cret-value")];
        let body = b"{}";
        let missing = verify_signature(platform, &HeaderMap::new(), body, &secrets).unwrap_err();
        assert!(matches!(missing, SignatureError::Missing { .. }));
        assert!(
            missing.to_string().contains("X-Haravan-Hmacsha256"),
            "{missing}"
        );

        let h = headers(&[("x-haravan-hmacsha256", "not base64!!")]);
        assert_eq!(
            verify_signature(platform, &h, body, &secrets),
            Err(SignatureError::NotBase64 {
                header: "X-Haravan-Hmacsha256"
            })
        );
        let h = headers(&[("x-haravan-hmac-sha256", "AAAA")]);
        assert_eq!(
            verify_signature(platform, &h, body, &secrets),
            Err(SignatureError::WrongLength {
                header: "X-Haravan-Hmac-Sha256",
                len: 3
            })
        );
        let other = sign(&Secret::new("other"), body);
        let h = headers(&[("x-haravan-hmac-sha256", &other)]);
        let mismatch = verify_signature(platform, &h, body, &secrets).unwrap_err();
        assert!(!mismatch.to_string().contains("s3cret"));
        let good = sign(&secrets[0], body);
        let h = headers(&[("x-haravan-hmac-sha256", &good)]);
        assert_eq!(verify_signature(platform, &h, body, &secrets), Ok(()));
        assert!(verify_signature(platform, &h, b"{ }", &secrets).is_err());
    }

    #[test]
    fn signed_headers_replace_the_old_signature_and_topic() {
        let platform = platform(PlatformKind::WooCommerce);
        let recorded = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            (
                "X-WC-Webhook-Topic".to_string(),
                "order.created".to_string(),
            ),
            ("X-WC-Webhook-Signature".to_string(), "old".to_string()),
        ];
        let secret = Secret::new("k");
        let out = signed_headers(platform, &recorded, b"{}", &secret, Some("order.updated"));
        let names: Vec<_> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "Content-Type",
                "X-WC-Webhook-Topic",
                "X-WC-Webhook-Signature"
            ]
        );
        assert_eq!(out[1].1, "order.updated");
        assert_eq!(out[2].1, sign(&secret, b"{}"));
    }
}
