//! Query parameters and request bodies into the store's filters; every bad value is a 400
//! naming the parameter.

use axum::extract::FromRequestParts;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::AdminError;
use crate::domain::{DeliveryId, DeliveryStatus, WebhookId, WebhookStatus};
use crate::store::{DeliveryFilter, WebhookFilter};

/// The most a listing returns in one page.
pub const MAX_LIMIT: i64 = 500;

/// [`axum::extract::Query`] whose refusal is a JSON 400 naming the parameter.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|rejection: QueryRejection| AdminError::BadRequest(rejection.body_text()))
    }
}

/// [`axum::Json`] whose refusal is a JSON 400 saying what is wrong with the body.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = AdminError;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::Json::<T>::from_request(request, state)
            .await
            .map(|b| Body(b.0))
            .map_err(|rejection: JsonRejection| AdminError::BadRequest(rejection.body_text()))
    }
}

/// A time: Unix milliseconds, or an RFC 3339 timestamp (`2026-03-14T03:22:06Z`).
pub fn time_ms(name: &str, text: &str) -> Result<i64, AdminError> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    text.parse::<jiff::Timestamp>()
        .map(|ts| ts.as_millisecond())
        .map_err(|_| {
            AdminError::BadRequest(format!(
                "{name}: `{text}` is not a time: Unix milliseconds or RFC 3339 (2026-03-14T03:22:06Z)"
            ))
        })
}

fn optional_time(name: &str, text: Option<&str>) -> Result<Option<i64>, AdminError> {
    text.map(|t| time_ms(name, t)).transpose()
}

/// A page size: 1 to [`MAX_LIMIT`], [`crate::ops::DEFAULT_LIST_LIMIT`] when not given.
pub fn limit(limit: Option<i64>) -> Result<i64, AdminError> {
    match limit {
        None => Ok(crate::ops::DEFAULT_LIST_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(AdminError::BadRequest(format!(
            "limit: {n} is not between 1 and {MAX_LIMIT}"
        ))),
    }
}

/// The filters of `GET /api/webhooks`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WebhookQuery {
    /// A source id (e.g. `haravan`).
    pub source: Option<String>,
    /// A topic (e.g. `orders/paid`).
    pub topic: Option<String>,
    /// accepted, translated, untranslated or purged.
    pub status: Option<String>,
    /// Received at or after: Unix milliseconds or RFC 3339.
    pub since: Option<String>,
    /// Received before: Unix milliseconds or RFC 3339.
    pub until: Option<String>,
    /// An order's id, or the number the shop shows (the body's `id`, `order_number` or
    /// `number`).
    pub order_id: Option<String>,
    /// The `next_cursor` of the page before.
    pub cursor: Option<i64>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
}

impl WebhookQuery {
    pub fn filter(&self) -> Result<WebhookFilter, AdminError> {
        let status = self
            .status
            .as_deref()
            .map(|word| {
                word.parse::<WebhookStatus>()
                    .map_err(|unknown| AdminError::BadRequest(format!("status: {unknown}")))
            })
            .transpose()?;
        Ok(WebhookFilter {
            status,
            source: self.source.clone(),
            topic: self.topic.clone(),
            since_ms: optional_time("since", self.since.as_deref())?,
            until_ms: optional_time("until", self.until.as_deref())?,
            order_id: self.order_id.clone(),
            before_id: self.cursor.map(WebhookId),
            limit: Some(limit(self.limit)?),
        })
    }
}

/// The filters of `GET /api/deliveries`, and of a replay or cancel by filter.
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// A destination id (e.g. `legion`).
    pub destination: Option<String>,
    /// pending, waiting, in_flight, delivered, dead, skipped, dry_run or cancelled.
    pub status: Option<String>,
    /// A mapping's id (e.g. `haravan/legion-purchase`).
    pub mapping: Option<String>,
    /// The deliveries of one webhook.
    pub webhook: Option<i64>,
    /// Created at or after: Unix milliseconds or RFC 3339.
    pub since: Option<String>,
    /// Created before: Unix milliseconds or RFC 3339.
    pub until: Option<String>,
    /// The `next_cursor` of the page before (listings only).
    pub cursor: Option<i64>,
    /// Page size, 1 to 500 (default 50; listings only).
    pub limit: Option<i64>,
}

impl DeliveryQuery {
    /// The store's filter, without a limit (a replay or cancel takes every match).
    pub fn filter(&self) -> Result<DeliveryFilter, AdminError> {
        let status = self
            .status
            .as_deref()
            .map(|word| {
                word.parse::<DeliveryStatus>()
                    .map_err(|unknown| AdminError::BadRequest(format!("status: {unknown}")))
            })
            .transpose()?;
        Ok(DeliveryFilter {
            status,
            destination: self.destination.clone(),
            since_ms: optional_time("since", self.since.as_deref())?,
            until_ms: optional_time("until", self.until.as_deref())?,
            webhook_id: self.webhook.map(WebhookId),
            mapping: self.mapping.clone(),
            before_id: self.cursor.map(DeliveryId),
            ..DeliveryFilter::default()
        })
    }
}

/// Which deliveries a replay or cancel touches: the ones named, or those a filter matches
/// (one of the two).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliverySelection {
    /// Delivery ids. A replay naming a cancelled delivery puts it back in the queue.
    pub ids: Option<Vec<i64>>,
    /// A filter (`cursor` and `limit` are not taken).
    pub filter: Option<DeliveryQuery>,
}

/// What a selection means.
pub enum Selected {
    Ids(Vec<DeliveryId>),
    Filter(DeliveryFilter),
}

impl DeliverySelection {
    pub fn selected(&self) -> Result<Selected, AdminError> {
        match (&self.ids, &self.filter) {
            (Some(ids), None) if !ids.is_empty() => {
                Ok(Selected::Ids(ids.iter().copied().map(DeliveryId).collect()))
            }
            (Some(_), None) => Err(AdminError::BadRequest("ids: the list is empty".into())),
            (None, Some(filter)) => {
                if filter.cursor.is_some() || filter.limit.is_some() {
                    return Err(AdminError::BadRequest(
                        "filter: cursor and limit are for listings, not for a replay or cancel"
                            .into(),
                    ));
                }
                Ok(Selected::Filter(filter.filter()?))
            }
            _ => Err(AdminError::BadRequest(
                "give either `ids` (a list of delivery ids) or `filter`, not both".into(),
            )),
        }
    }
}
