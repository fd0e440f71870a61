//! Scalef (ACCESSTRADE): create a conversion and keep its id; update its status with that
//! id. Paths and the network id are settings, since Scalef's documents disagree on them.

use super::{Destination, HeaderValue, Outgoing, Request, credential, json_body, setting, single};
use crate::config::DestinationConfig;
use crate::domain::{DestinationKind, Operation};

pub struct Scalef {
    create_url: String,
    status_url: String,
    network_id: String,
    user: HeaderValue,
    access_token: HeaderValue,
}

/// The credentials it reads ([`DestinationKind::credential_names`]).
const CREDENTIALS: &[&str] = match DestinationKind::Scalef.credential_names() {
    Some(names) => names,
    None => &[],
};

impl Scalef {
    pub fn new(config: &DestinationConfig) -> Self {
        Scalef {
            create_url: format!(
                "{}{}",
                config.base_url,
                setting(config, "create_path", "/api/v1/conversion")
            ),
            status_url: format!(
                "{}{}",
                config.base_url,
                setting(config, "status_path", "/api/v1/update-conversion-status")
            ),
            network_id: setting(config, "network_id", "1"),
            user: credential(config, CREDENTIALS[0]),
            access_token: credential(config, CREDENTIALS[1]),
        }
    }
}

impl Destination for Scalef {
    fn kind(&self) -> &'static str {
        "scalef"
    }
    fn operations(&self) -> &'static [Operation] {
        &[
            Operation::ScalefCreateConversion,
            Operation::ScalefUpdateConversionStatus,
        ]
    }
    fn request(&self, batch: &[Outgoing]) -> Result<Request, String> {
        let delivery = single(batch)?;
        let user = ("X-At-User".to_string(), self.user.clone());
        let token = (
            "X-At-User-Access-Token".to_string(),
            self.access_token.clone(),
        );
        let plain = |v: &str| HeaderValue::Plain(v.to_string());
        match delivery.operation {
            Operation::ScalefCreateConversion => Ok(Request::json(
                self.create_url.clone(),
                vec![user, ("X-At-User-Type".into(), plain("advertiser")), token],
                &delivery.payload,
            )),
            Operation::ScalefUpdateConversionStatus => {
                let conversion_id = delivery
                    .conversion_id
                    .as_ref()
                    .ok_or("no conversion id: the conversion's create has not answered with one")?;
                let mut body = delivery.payload.clone();
                body["conversion_id"] = conversion_id.clone().into();
                Ok(Request::json(
                    self.status_url.clone(),
                    vec![
                        ("X-Network-Id".into(), plain(&self.network_id)),
                        user,
                        ("X-At-User-Type".into(), plain("api")),
                        token,
                    ],
                    &body,
                ))
            }
            other => Err(format!("scalef does not perform {other}")),
        }
    }
    /// Success is `"status": "success"`; a create's answer carries the conversion id. A
    /// create that succeeded without one is still delivered: the conversion exists, and
    /// sending it again (a replay of a dead one) could pay the commission twice. Its status
    /// updates are then skipped, with the reason.
    fn read_success(&self, batch: &[Outgoing], body: &[u8]) -> Result<Option<String>, String> {
        let answer = json_body(body)?;
        match answer.get("status").and_then(|s| s.as_str()) {
            Some("success") => {}
            other => return Err(format!("status {}", other.unwrap_or("missing"))),
        }
        if batch.first().map(|d| d.operation) != Some(Operation::ScalefCreateConversion) {
            return Ok(None);
        }
        let conversion_id = answer
            .pointer("/data/conversion/conversion_id")
            .and_then(|id| id.as_str())
            .map(str::to_string);
        if conversion_id.is_none() {
            let deliveries: Vec<i64> = batch.iter().map(|d| d.delivery_id).collect();
            let mut mappings: Vec<&str> = batch.iter().map(|d| d.mapping.as_str()).collect();
            mappings.dedup();
            tracing::warn!(
                ?deliveries,
                ?mappings,
                "scalef created the conversion without answering data.conversion.conversion_id; \
                 its status updates will be skipped"
            );
        }
        Ok(conversion_id)
    }
}
