//! Trying the live mappings on a payload: every mapping's plan, skip or error, nothing
//! stored or sent (the playground's engine, and a tool for integrators' scripts).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::domain::{Operation, PlatformKind};
use crate::mapping::{Catalog, Outcome, TranslateError, Webhook};

/// A payload to try, as a webhook of `platform` and `topic` from `source`.
#[derive(Debug, Clone)]
pub struct TryWebhook<'a> {
    pub platform: PlatformKind,
    pub topic: &'a str,
    /// `$source`, and the source whose `vars` apply (default: the platform's name).
    pub source: &'a str,
    pub headers: &'a BTreeMap<String, String>,
    pub body: &'a [u8],
}

/// What one mapping routed to the webhook's platform and topic made of it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Tried {
    /// The payload it would send, valid for its operation's schema.
    Plan {
        key: String,
        payload: Value,
        /// (mapping, key) of the delivery it would wait for.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<Vec<String>>)]
        needs: Option<(String, String)>,
    },
    /// It applies, and said not to send, with its reason.
    Skip { key: String, reason: String },
    /// It failed: the field, the expression and why; a schema's every violation.
    Error {
        field: String,
        expression: String,
        message: String,
        schema_errors: Vec<String>,
    },
    /// Its `when` does not hold for this webhook.
    NotApplied,
}

/// One mapping's result.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MappingTried {
    pub mapping: String,
    pub destination: String,
    pub operation: Operation,
    #[serde(flatten)]
    pub tried: Tried,
}

/// What the live mappings make of a webhook.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Translation {
    /// Every mapping routed to the platform and topic, in file order.
    pub mappings: Vec<MappingTried>,
    /// Why the webhook would be stored `untranslated`, as the receive path would store it
    /// (no mapping routed, or the errors one a line); `null` when it would translate.
    pub error: Option<String>,
}

/// Runs `catalog` over `webhook`: every routed mapping's plan, skip, error or `when` not
/// holding. Pure: nothing is stored or sent, and nothing is counted in the metrics.
pub fn try_mappings(catalog: &Catalog, webhook: &TryWebhook<'_>) -> Translation {
    let webhook = Webhook {
        source: webhook.source,
        platform: webhook.platform,
        topic: webhook.topic,
        headers: webhook.headers,
        body: webhook.body,
    };
    let results = catalog.translate(&webhook);
    // As the receive path would store it, from the same results; counted nowhere: a try
    // is not a translation the service made.
    let error =
        catalog.translation_error(&webhook, results.iter().filter_map(|r| r.as_ref().err()));
    let mut results: BTreeMap<String, Result<Outcome, TranslateError>> = results
        .into_iter()
        .map(|result| {
            let mapping = match &result {
                Ok(outcome) => outcome.mapping().to_string(),
                Err(error) => error.mapping.clone(),
            };
            (mapping, result)
        })
        .collect();
    let mappings = catalog
        .routed(webhook.platform, webhook.topic)
        .map(|mapping| {
            let tried = match results.remove(&mapping.id) {
                None => Tried::NotApplied,
                Some(Ok(Outcome::Plan(plan))) => Tried::Plan {
                    key: plan.key,
                    payload: plan.payload,
                    needs: plan.needs.map(|n| (n.mapping, n.key)),
                },
                Some(Ok(Outcome::Skip(skip))) => Tried::Skip {
                    key: skip.key,
                    reason: skip.skipped,
                },
                Some(Err(error)) => Tried::Error {
                    field: error.field,
                    expression: error.expression,
                    message: error.message,
                    schema_errors: error.schema_errors,
                },
            };
            MappingTried {
                mapping: mapping.id.clone(),
                destination: mapping.destination.clone(),
                operation: mapping.operation,
                tried,
            }
        })
        .collect();
    Translation { mappings, error }
}
