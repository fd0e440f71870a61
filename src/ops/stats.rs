//! The overview: deliveries per status and destination, how old the oldest pending one is,
//! each destination's circuit, and the attempts per minute of the last hour.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::delivery::{Circuit, CircuitState};
use crate::store::{MinuteCount, StatusCount, Store, StoreError, now_ms};

/// The span [`stats`] counts attempts over.
pub const STATS_WINDOW_MS: i64 = 3_600_000;

/// One destination's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DestinationStats {
    pub destination: String,
    /// Its deliveries by status (only statuses it has).
    pub counts: BTreeMap<String, u64>,
    /// How long its oldest `pending` delivery has been waiting, in milliseconds.
    pub oldest_pending_age_ms: Option<i64>,
    /// Its circuit breaker, when a worker of this service sends to it.
    pub circuit: Option<CircuitState>,
}

/// The overview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Stats {
    /// Unix time in milliseconds at which it was counted.
    pub at: i64,
    /// Deliveries by status, every destination together.
    pub totals: BTreeMap<String, u64>,
    pub destinations: Vec<DestinationStats>,
    /// Each of the last 60 minutes, oldest first (minutes without attempts count 0).
    pub per_minute: Vec<MinuteCount>,
}

/// Counts the overview from `store`, with the circuits of the destinations workers send to.
pub async fn stats(
    store: &dyn Store,
    circuits: &BTreeMap<String, Circuit>,
) -> Result<Stats, StoreError> {
    let now = now_ms();
    let first_minute = (now - STATS_WINDOW_MS) / 60_000 * 60_000 + 60_000;
    let counted = store.delivery_stats(first_minute).await?;
    let mut totals = BTreeMap::new();
    let mut destinations: BTreeMap<String, DestinationStats> = circuits
        .iter()
        .map(|(id, circuit)| {
            let stats = DestinationStats {
                destination: id.clone(),
                counts: BTreeMap::new(),
                oldest_pending_age_ms: None,
                circuit: Some(circuit.state()),
            };
            (id.clone(), stats)
        })
        .collect();
    let of = |destinations: &mut BTreeMap<String, DestinationStats>, id: &str| {
        destinations
            .entry(id.to_string())
            .or_insert_with(|| DestinationStats {
                destination: id.to_string(),
                counts: BTreeMap::new(),
                oldest_pending_age_ms: None,
                circuit: None,
            });
    };
    for StatusCount {
        destination,
        status,
        count,
    } in &counted.counts
    {
        *totals.entry(status.as_str().to_string()).or_insert(0) += count;
        of(&mut destinations, destination);
        destinations
            .get_mut(destination)
            .expect("inserted")
            .counts
            .insert(status.as_str().to_string(), *count);
    }
    for (destination, created_at) in &counted.oldest_pending {
        of(&mut destinations, destination);
        destinations
            .get_mut(destination)
            .expect("inserted")
            .oldest_pending_age_ms = Some((now - created_at).max(0));
    }
    let mut per_minute = Vec::with_capacity(60);
    let mut counted_minutes = counted.per_minute.iter().peekable();
    for n in 0..60 {
        let minute = first_minute + n * 60_000;
        let count = match counted_minutes.peek() {
            Some(c) if c.minute == minute => *counted_minutes.next().expect("peeked"),
            _ => MinuteCount {
                minute,
                delivered: 0,
                failed: 0,
            },
        };
        per_minute.push(count);
    }
    Ok(Stats {
        at: now,
        totals,
        destinations: destinations.into_values().collect(),
        per_minute,
    })
}
