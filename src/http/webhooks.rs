//! `POST /webhooks/{source}`: verify on the raw bytes, store durably, then answer.
//! `GET /webhooks/{source}`: the platform's subscription handshake, where it has one.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::AppState;
use super::serve::RequestTimedOut;
use crate::config::SourceConfig;
use crate::error::ApiError;
use crate::mapping::Webhook;
use crate::source::{BodyFields, header_text, kept_headers, verify_signature};
use crate::store::{Accepted, NewDelivery, NewWebhook, now_ms};

pub async fn receive(
    State(state): State<AppState>,
    Path(source_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let arrived = std::time::Instant::now();
    let (response, topic, outcome) = match receive_webhook(&state, &source_id, &headers, body).await
    {
        Ok(answered) => (answered.response, answered.topic, answered.outcome),
        Err(err) => {
            let delivery_id = state
                .sources
                .get(&source_id)
                .and_then(|s| crate::source::platform(s.platform).delivery_id_header())
                .and_then(|name| header_text(&headers, name));
            err.log(&source_id, delivery_id);
            // A refused request's topic is not vouched for by a signature: not a label.
            let code = err.code();
            (err.into_response(), "-".to_string(), code)
        }
    };
    // Only configured sources become labels: a path anyone can make up must not add series.
    let source = if state.sources.contains_key(&source_id) {
        source_id.as_str()
    } else {
        "-"
    };
    crate::observe::webhook_answered(source, &topic, outcome, arrived.elapsed().as_secs_f64());
    response
}

/// A webhook's answer, with its topic and outcome for the metrics.
struct Answered {
    response: Response,
    topic: String,
    /// `stored`, `untranslated`, `duplicate` or `ping`.
    outcome: &'static str,
}

async fn receive_webhook(
    state: &AppState,
    source_id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Answered, ApiError> {
    let source = find_source(state, source_id)?;
    let platform = crate::source::platform(source.platform);
    let raw = read_body(body, headers, state.max_body_bytes).await?;
    // The ping is unsigned and stores nothing: answer it even before the secret is set, so
    // the shop can activate the webhook while the operator finishes the configuration.
    if platform.is_unsigned_ping(headers, &raw) {
        tracing::info!(source = source_id, platform = %source.platform, "ping answered 200");
        return Ok(Answered {
            response: Json(json!({ "ping": "ok" })).into_response(),
            topic: "-".to_string(),
            outcome: "ping",
        });
    }
    if !source.secrets.is_set() {
        return Err(ApiError::SourceNotConfigured {
            source_id: source_id.to_string(),
            variables: source.secrets.unset_variables.clone(),
        });
    }
    verify_signature(platform, headers, &raw, &source.secrets.values)?;
    let topic = header_text(headers, platform.topic_header()).ok_or(ApiError::MissingTopic {
        header: platform.topic_header(),
    })?;
    let fields = BodyFields::parse(&raw).map_err(ApiError::NotJson)?;
    let delivery_id = platform
        .delivery_id_header()
        .and_then(|name| header_text(headers, name))
        .unwrap_or("-");
    let kept = kept_headers(platform, headers);
    let (plans, translation_error) = state.catalog.load().plans_and_error(&Webhook {
        source: source_id,
        platform: source.platform,
        topic,
        headers: &kept,
        body: &raw,
    });
    let deliveries: Vec<NewDelivery> = plans.into_iter().map(NewDelivery::from).collect();
    // Said once the webhook has its id, so that each line names it.
    let skips: Vec<(String, String)> = deliveries
        .iter()
        .filter_map(|d| Some((d.mapping.clone(), d.skipped.clone()?)))
        .collect();
    let error_text = translation_error.clone();
    let destinations: Vec<String> = deliveries
        .iter()
        .filter(|d| d.skipped.is_none())
        .map(|d| d.destination.clone())
        .collect();
    let untranslated = translation_error.is_some();
    let webhook = NewWebhook {
        source: source_id.to_string(),
        platform: source.platform.as_str().to_string(),
        topic: topic.to_string(),
        dedupe_id: platform.dedupe_id(headers, topic, &fields, &raw),
        headers: kept,
        body: raw.to_vec(),
        received_at_ms: now_ms(),
        deliveries,
        translation_error,
    };
    let accepted = state
        .store
        .accept(webhook)
        .await
        .map_err(ApiError::StoreUnavailable)?;
    let (webhook_id, duplicate, deliveries, skipped) = match accepted {
        Accepted::Stored {
            webhook_id,
            deliveries,
            skipped,
        } => (webhook_id, false, deliveries, skipped),
        Accepted::Duplicate { webhook_id } => (webhook_id, true, 0, 0),
    };
    if deliveries > 0 {
        for destination in &destinations {
            if let Some(wake) = state.wake.get(destination) {
                wake.notify_one();
            }
        }
    }
    if !duplicate {
        let webhook_id = webhook_id.0;
        if !platform.known_topics().contains(&topic) {
            tracing::info!(
                source = source_id,
                topic,
                webhook_id,
                delivery_id,
                "unknown topic accepted"
            );
        }
        if let Some(error) = &error_text {
            tracing::warn!(source = source_id, topic, webhook_id, delivery_id, %error, "webhook not (fully) translated: stored as untranslated");
        }
        for (mapping, reason) in &skips {
            tracing::info!(
                source = source_id,
                topic,
                webhook_id,
                delivery_id,
                mapping,
                reason,
                "mapping skipped the webhook"
            );
        }
    }
    tracing::info!(
        source = source_id,
        topic,
        webhook_id = webhook_id.0,
        delivery_id,
        duplicate,
        deliveries,
        skipped,
        "webhook accepted"
    );
    let outcome = if duplicate {
        "duplicate"
    } else if untranslated {
        "untranslated"
    } else {
        "stored"
    };
    Ok(Answered {
        response: Json(json!({
            "webhook_id": webhook_id,
            "duplicate": duplicate,
            "deliveries": deliveries,
            "skipped": skipped,
        }))
        .into_response(),
        topic: topic.to_string(),
        outcome,
    })
}

pub async fn handshake(
    State(state): State<AppState>,
    Path(source_id): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    match subscription_handshake(&state, &source_id, &query) {
        Ok(response) => response,
        Err(err) => {
            err.log(&source_id, None);
            err.into_response()
        }
    }
}

fn subscription_handshake(
    state: &AppState,
    source_id: &str,
    query: &BTreeMap<String, String>,
) -> Result<Response, ApiError> {
    let source = find_source(state, source_id)?;
    let request = crate::source::platform(source.platform)
        .subscription_request(query)
        .ok_or(ApiError::MethodNotAllowed)?;
    if !source.verify_token.is_set() {
        return Err(ApiError::HandshakeNotConfigured {
            source_id: source_id.to_string(),
            variables: source.verify_token.unset_variables.clone(),
        });
    }
    let matches = source.verify_token.values.iter().any(|token| {
        bool::from(
            token
                .expose()
                .as_bytes()
                .ct_eq(request.verify_token.as_bytes()),
        )
    });
    if !matches {
        return Err(ApiError::HandshakeRefused);
    }
    tracing::info!(source = source_id, "subscription handshake answered");
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        request.challenge,
    )
        .into_response())
}

fn find_source<'a>(state: &'a AppState, source_id: &str) -> Result<&'a SourceConfig, ApiError> {
    state
        .sources
        .get(source_id)
        .ok_or_else(|| ApiError::UnknownSource {
            source_id: source_id.to_string(),
        })
}

/// Reads the whole body, refusing it as soon as it passes `limit` (or at once when its
/// declared length does), or when it is not complete by the request's deadline.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let declared =
        header_text(headers, header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::BodyTooLarge { limit })
        }
        Err(err) => match RequestTimedOut::find(err.as_ref()) {
            Some(late) => Err(ApiError::RequestTimeout { limit: late.limit }),
            None => Err(ApiError::BodyUnreadable(err.to_string())),
        },
    }
}
