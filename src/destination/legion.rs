//! Legion: purchase events, several per request, `X-Api-Key`.

use super::{Destination, HeaderValue, Outgoing, Request, credential, json_body};
use crate::config::DestinationConfig;
use crate::domain::{DestinationKind, Operation};

pub const EVENTS_PATH: &str = "/integration/flow-state/event/add/";

pub struct Legion {
    url: String,
    api_key: HeaderValue,
    batch_size: usize,
}

/// The credentials it reads ([`DestinationKind::credential_names`]).
const CREDENTIALS: &[&str] = match DestinationKind::Legion.credential_names() {
    Some(names) => names,
    None => &[],
};

impl Legion {
    pub fn new(config: &DestinationConfig) -> Self {
        Legion {
            url: format!("{}{EVENTS_PATH}", config.base_url),
            api_key: credential(config, CREDENTIALS[0]),
            batch_size: config.batch_size,
        }
    }
}

impl Destination for Legion {
    fn kind(&self) -> &'static str {
        "legion"
    }
    fn operations(&self) -> &'static [Operation] {
        &[Operation::LegionPurchaseEvent]
    }
    fn max_batch(&self) -> usize {
        self.batch_size
    }
    /// The body is a JSON array: one event per delivery.
    fn request(&self, batch: &[Outgoing]) -> Result<Request, String> {
        let events: Vec<&serde_json::Value> = batch.iter().map(|d| &d.payload).collect();
        Ok(Request::json(
            self.url.clone(),
            vec![("X-Api-Key".into(), self.api_key.clone())],
            &events,
        ))
    }
    /// Error bodies are not documented: a 2xx whose JSON has a `"status"` other than
    /// `"success"` (another string, `false`, a number, …) is a refusal; any other 2xx is
    /// success.
    fn read_success(&self, _batch: &[Outgoing], body: &[u8]) -> Result<Option<String>, String> {
        match json_body(body).ok().and_then(|v| v.get("status").cloned()) {
            None => Ok(None),
            Some(serde_json::Value::String(s)) if s == "success" => Ok(None),
            Some(serde_json::Value::String(s)) => Err(format!("status `{s}`")),
            Some(other) => Err(format!("status `{other}`")),
        }
    }
}
