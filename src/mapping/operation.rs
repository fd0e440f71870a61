//! The JSON Schema every payload of an [`Operation`] must pass.
//! The validators are built once, on first use.

use std::sync::LazyLock;

use serde_json::Value;

use super::output_schema::violations_of;
use crate::domain::Operation;

/// The schema every payload of an operation must pass: validation is the mapping's check,
/// done at translate time, so the operation itself (a [`crate::domain`] word) knows nothing
/// of it.
pub trait OperationSchema {
    /// Every way `payload` breaks this operation's schema, as (JSON pointer, message), in
    /// document order; empty when it is valid. For a missing required field the pointer
    /// names the field itself (`/payload/username`), not the object that lacks it.
    fn violations(self, payload: &Value) -> Vec<(String, String)>;
}

fn schema_text(op: Operation) -> &'static str {
    match op {
        Operation::LegionPurchaseEvent => include_str!("schemas/legion.purchase_event.json"),
        Operation::ScalefCreateConversion => include_str!("schemas/scalef.create_conversion.json"),
        Operation::ScalefUpdateConversionStatus => {
            include_str!("schemas/scalef.update_conversion_status.json")
        }
        Operation::SalekitUpsertAudience => include_str!("schemas/salekit.upsert_audience.json"),
        Operation::HttpPost => include_str!("schemas/http.post.json"),
    }
}

impl OperationSchema for Operation {
    fn violations(self, payload: &Value) -> Vec<(String, String)> {
        violations_of(&VALIDATORS[self as usize], payload)
    }
}

/// One validator per operation, in the order of [`Operation::ALL`] (which matches the enum's
/// discriminants). The schemas are compiled into the binary and tested, so building them
/// cannot fail at run time.
static VALIDATORS: LazyLock<Vec<jsonschema::Validator>> = LazyLock::new(|| {
    Operation::ALL
        .iter()
        .map(|op| {
            let schema: Value =
                serde_json::from_str(schema_text(*op)).expect("shipped schemas are JSON");
            jsonschema::validator_for(&schema).expect("shipped schemas are valid")
        })
        .collect()
});

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_schema_builds() {
        for op in Operation::ALL {
            assert!(op.violations(&json!({})).len() <= 40);
        }
    }

    #[test]
    fn the_legion_seed_event_passes_and_a_missing_field_is_named() {
        let mut seed = json!({
          "id": "550e8400-e29b-41d4-a716-446655440000", "event_id": 2,
          "payload": {
            "uid": "1001", "username": "9121234567", "order_id": "10001",
            "order_total_price": 500000, "order_paid_price": 500000,
            "order_with_discount_price": 500000, "order_coupon_codes": ["empty"],
            "discount_price_applied": 0, "cashback_price_applied": 0, "cost_misc": 0,
            "cost_shipping": 0, "cost_taxonomy": 0, "currency": "تومان", "products": [1001],
            "Included_categories": [1], "affiliate_referrer_id": "",
            "timestamp": "2025-01-01 10:00:00", "purchase_channel": "آنلاین", "branch": ""
          },
          "meta": {}
        });
        assert_eq!(Operation::LegionPurchaseEvent.violations(&seed), vec![]);
        seed["payload"].as_object_mut().unwrap().remove("username");
        seed["payload"]["products"] = json!(["1001"]);
        let violations = Operation::LegionPurchaseEvent.violations(&seed);
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(
            violations
                .iter()
                .any(|(path, m)| path == "/payload/username" && m.contains("username"))
        );
        assert!(
            violations
                .iter()
                .any(|(path, _)| path == "/payload/products/0")
        );
    }

    #[test]
    fn salekit_and_scalef_bodies() {
        let ok = json!({"full_name": "Khách hàng 01", "email": "khachhang01@gmail.com", "phone": "0985666555"});
        assert!(Operation::SalekitUpsertAudience.violations(&ok).is_empty());
        let bad = json!({"full_name": "A", "email": "a@b.vn", "phone": "985666555"});
        assert_eq!(
            Operation::SalekitUpsertAudience.violations(&bad)[0].0,
            "/phone"
        );
        let status = json!({"status": "rejected", "reason": "Don hang bi huy"});
        assert!(
            Operation::ScalefUpdateConversionStatus
                .violations(&status)
                .is_empty()
        );
        let conversion = json!({"click_id": "a81b", "campaign_id": "463", "order_id": "No.645", "currency": "VND"});
        assert!(
            Operation::ScalefCreateConversion
                .violations(&conversion)
                .is_empty()
        );
        assert!(Operation::HttpPost.violations(&json!([1])).len() == 1);
    }
}
