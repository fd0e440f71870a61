//! Salekit: audience create-or-update, header `Token`; success only when the body says
//! `"error": false`, whatever the HTTP status.

use super::{Destination, HeaderValue, Outgoing, Request, credential, json_body, single};
use crate::config::DestinationConfig;
use crate::domain::{DestinationKind, Operation};

pub const AUDIENCE_PATH: &str = "/api/v1/audience/create";

pub struct Salekit {
    url: String,
    token: HeaderValue,
}

/// The credentials it reads ([`DestinationKind::credential_names`]).
const CREDENTIALS: &[&str] = match DestinationKind::Salekit.credential_names() {
    Some(names) => names,
    None => &[],
};

impl Salekit {
    pub fn new(config: &DestinationConfig) -> Self {
        Salekit {
            url: format!("{}{AUDIENCE_PATH}", config.base_url),
            token: credential(config, CREDENTIALS[0]),
        }
    }
}

impl Destination for Salekit {
    fn kind(&self) -> &'static str {
        "salekit"
    }
    fn operations(&self) -> &'static [Operation] {
        &[Operation::SalekitUpsertAudience]
    }
    fn request(&self, batch: &[Outgoing]) -> Result<Request, String> {
        let delivery = single(batch)?;
        Ok(Request::json(
            self.url.clone(),
            vec![("Token".into(), self.token.clone())],
            &delivery.payload,
        ))
    }
    fn read_success(&self, _batch: &[Outgoing], body: &[u8]) -> Result<Option<String>, String> {
        let answer = json_body(body)?;
        if answer.get("error") == Some(&serde_json::Value::Bool(false)) {
            Ok(None)
        } else {
            let message = answer
                .get("msg")
                .and_then(|m| m.as_str())
                .unwrap_or("the answer does not say \"error\": false");
            Err(message.to_string())
        }
    }
}
