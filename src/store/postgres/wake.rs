//! Wake-ups across instances: a transaction that makes deliveries due (a webhook accepted,
//! deliveries requeued or released) sends `NOTIFY storehook_due` with the destination as
//! its payload, delivered when it commits; every instance LISTENs on a connection of its
//! own and wakes that destination's worker. A notification may be lost (the connection
//! drops, the server restarts): the listener then reconnects and wakes every worker once,
//! and the workers keep polling anyway, so a lost one only delays a delivery.

use std::time::Duration;

use sqlx::PgConnection;
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::mpsc;

use crate::store::Due;

/// The channel of the notifications. Channels are per database, not per schema: the
/// payload names the schema too ([`payload`]), and an instance heeds only its own.
pub(super) const CHANNEL: &str = "storehook_due";

/// How long the listener waits before connecting again after a failure, at most.
const RECONNECT_AT_MOST: Duration = Duration::from_secs(30);

/// The payload announcing `destination`'s deliveries in `schema`.
fn payload(schema: &str, destination: &str) -> String {
    format!("{schema}/{destination}")
}

/// Announces, when the calling transaction commits, that deliveries of these destinations
/// are due (each once: PostgreSQL also folds repeats within a transaction).
pub(super) async fn notify_due(
    conn: &mut PgConnection,
    schema: &str,
    destinations: &[String],
) -> Result<(), sqlx::Error> {
    let mut payloads: Vec<String> = destinations.iter().map(|d| payload(schema, d)).collect();
    payloads.sort();
    payloads.dedup();
    if payloads.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
        .bind(CHANNEL)
        .bind(&payloads)
        .execute(conn)
        .await?;
    Ok(())
}

/// Starts listening; the returned receiver gets a [`Due`] for every notification of
/// `schema`, and [`Due::Any`] after the listener (re)connects. The task ends when the
/// receiver is dropped.
pub(super) fn subscribe(pool: PgPool, schema: String) -> mpsc::Receiver<Due> {
    let (sender, receiver) = mpsc::channel(1024);
    tokio::spawn(async move {
        tokio::select! {
            () = listen(&pool, &schema, &sender) => {}
            () = sender.closed() => {}
        }
    });
    receiver
}

async fn listen(pool: &PgPool, schema: &str, sender: &mpsc::Sender<Due>) {
    let prefix = format!("{schema}/");
    let mut backoff = Duration::from_millis(250);
    loop {
        let mut listener = match connect(pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "cannot LISTEN for due deliveries; the workers poll meanwhile");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RECONNECT_AT_MOST);
                continue;
            }
        };
        backoff = Duration::from_millis(250);
        // Whatever was announced while no one listened: every worker looks.
        if sender.try_send(Due::Any).is_err() && sender.is_closed() {
            return;
        }
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    let Some(destination) = notification.payload().strip_prefix(&prefix) else {
                        continue;
                    };
                    // A full queue already holds wake-ups enough.
                    let _ = sender.try_send(Due::Destination(destination.to_string()));
                }
                Ok(None) => {
                    tracing::warn!("the LISTEN connection was lost and made again");
                    let _ = sender.try_send(Due::Any);
                }
                Err(error) => {
                    tracing::warn!(%error, "LISTEN for due deliveries failed; connecting again");
                    break;
                }
            }
        }
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
