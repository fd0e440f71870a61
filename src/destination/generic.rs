//! A generic HTTP endpoint: the payload POSTed as JSON to the destination's `base_url`, with
//! headers from settings (`header:Name = "value"`) and credentials (`header:Name`).

use super::{Destination, HeaderValue, Outgoing, Request, single};
use crate::config::DestinationConfig;
use crate::domain::Operation;

pub struct Http {
    url: String,
    headers: Vec<(String, HeaderValue)>,
}

impl Http {
    pub fn new(config: &DestinationConfig) -> Self {
        let plain = config.settings.iter().filter_map(|(name, value)| {
            name.strip_prefix("header:")
                .map(|h| (h.to_string(), HeaderValue::Plain(value.clone())))
        });
        let secret = config.credentials.iter().filter_map(|(name, value)| {
            name.strip_prefix("header:")
                .map(|h| (h.to_string(), HeaderValue::Secret(value.clone())))
        });
        Http {
            url: config.base_url.clone(),
            headers: plain.chain(secret).collect(),
        }
    }
}

impl Destination for Http {
    fn kind(&self) -> &'static str {
        "http"
    }
    fn operations(&self) -> &'static [Operation] {
        &[Operation::HttpPost]
    }
    fn request(&self, batch: &[Outgoing]) -> Result<Request, String> {
        let delivery = single(batch)?;
        Ok(Request::json(
            self.url.clone(),
            self.headers.clone(),
            &delivery.payload,
        ))
    }
    fn read_success(&self, _batch: &[Outgoing], _body: &[u8]) -> Result<Option<String>, String> {
        Ok(None)
    }
}
