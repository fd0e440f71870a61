//! What a destination is asked to do.

use serde::{Deserialize, Serialize};

use super::words::words;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Operation {
    #[serde(rename = "legion.purchase_event")]
    LegionPurchaseEvent,
    #[serde(rename = "scalef.create_conversion")]
    ScalefCreateConversion,
    #[serde(rename = "scalef.update_conversion_status")]
    ScalefUpdateConversionStatus,
    #[serde(rename = "salekit.upsert_audience")]
    SalekitUpsertAudience,
    #[serde(rename = "http.post")]
    HttpPost,
}

words!(
    Operation,
    "operation",
    [
        LegionPurchaseEvent = "legion.purchase_event",
        ScalefCreateConversion = "scalef.create_conversion",
        ScalefUpdateConversionStatus = "scalef.update_conversion_status",
        SalekitUpsertAudience = "salekit.upsert_audience",
        HttpPost = "http.post",
    ]
);

impl Operation {
    /// The destination kind that performs it: the part before the dot.
    pub fn destination_kind(self) -> &'static str {
        self.as_str()
            .split_once('.')
            .map(|(kind, _)| kind)
            .unwrap_or_default()
    }

    /// Whether a delivery of this operation cannot be made without the id its conversion's
    /// create was answered with (a Scalef status update). Other deliveries that need another
    /// one go on without it.
    pub fn needs_conversion_id(self) -> bool {
        self == Self::ScalefUpdateConversionStatus
    }
}

#[cfg(test)]
mod tests {
    use super::Operation;

    #[test]
    fn names_round_trip_and_order_matches_the_discriminants() {
        for (i, op) in Operation::ALL.into_iter().enumerate() {
            assert_eq!(op as usize, i);
            assert_eq!(op.as_str().parse::<Operation>().unwrap(), op);
            assert_eq!(
                serde_json::to_value(op).unwrap(),
                serde_json::Value::String(op.as_str().into())
            );
        }
        assert_eq!(
            Operation::ScalefCreateConversion.destination_kind(),
            "scalef"
        );
        assert!("scalef.create".parse::<Operation>().is_err());
    }
}
