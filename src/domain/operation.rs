//! What a destination is asked to do.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

impl Operation {
    /// Every operation, in the order of the enum's discriminants.
    pub const ALL: [Operation; 5] = [
        Self::LegionPurchaseEvent,
        Self::ScalefCreateConversion,
        Self::ScalefUpdateConversionStatus,
        Self::SalekitUpsertAudience,
        Self::HttpPost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LegionPurchaseEvent => "legion.purchase_event",
            Self::ScalefCreateConversion => "scalef.create_conversion",
            Self::ScalefUpdateConversionStatus => "scalef.update_conversion_status",
            Self::SalekitUpsertAudience => "salekit.upsert_audience",
            Self::HttpPost => "http.post",
        }
    }

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

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Operation {
    type Err = super::UnknownWord;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|op| op.as_str() == text)
            .ok_or_else(|| super::UnknownWord::new("operation", text, Self::ALL.map(Self::as_str)))
    }
}

#[cfg(test)]
mod tests {
    use super::Operation;

    #[test]
    fn names_round_trip_and_order_matches_the_discriminants() {
        for (i, op) in Operation::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i);
            assert_eq!(op.as_str().parse::<Operation>().unwrap(), *op);
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
