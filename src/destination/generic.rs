//! A generic HTTP endpoint: the payload sent as JSON to the destination's `url` with its
//! `method` (POST unless it says PUT or PATCH) and `headers`; a header taken from the
//! environment is a secret, masked wherever the request is shown.

use super::{Destination, HeaderValue, Outgoing, Request, single};
use crate::config::{DestinationConfig, HeaderSetting, HttpMethod};
use crate::domain::Operation;

pub struct Http {
    url: String,
    method: HttpMethod,
    headers: Vec<(String, HeaderValue)>,
}

impl Http {
    pub fn new(config: &DestinationConfig) -> Self {
        let headers = config
            .headers
            .iter()
            .map(|(name, setting)| {
                let value = match setting {
                    HeaderSetting::Plain(value) => HeaderValue::Plain(value.clone()),
                    HeaderSetting::Secret(Some(secret)) => HeaderValue::Secret(secret.clone()),
                    HeaderSetting::Secret(None) => HeaderValue::Unset,
                };
                (name.clone(), value)
            })
            .collect();
        Http {
            url: config.base_url.clone(),
            method: config.method,
            headers,
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
        let mut request = Request::json(self.url.clone(), self.headers.clone(), &delivery.payload);
        request.method = self.method;
        Ok(request)
    }
    fn read_success(&self, _batch: &[Outgoing], _body: &[u8]) -> Result<Option<String>, String> {
        Ok(None)
    }
}
