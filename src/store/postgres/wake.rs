//! Announcements across instances, on `LISTEN/NOTIFY`. Two kinds:
//!
//! - due deliveries: a transaction that makes deliveries due (a webhook accepted, deliveries
//!   requeued or released) sends `NOTIFY storehook_due` with the destination as its payload,
//!   delivered when it commits, and every instance wakes that destination's worker;
//! - mapping reloads: an instance whose operator reloaded its mappings (admin API,
//!   dashboard) sends `NOTIFY storehook_reload`, and every other instance loads its own
//!   mappings directory again.
//!
//! Every instance LISTENs on both channels on one connection of its own. A notification may
//! be lost (the connection drops, the server restarts): the listener then reconnects and
//! says so ([`Announcement::Listening`] with `again`), on which every worker looks at its
//! queue and the mappings are loaded again once; the workers keep polling anyway, so a lost
//! wake-up only delays a delivery.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::mpsc;

use crate::store::{Announcement, ReloadAnnounced};

/// The channel of due deliveries. Channels are per database, not per schema: the payload
/// names the schema too ([`payload`]), and an instance heeds only its own.
pub(super) const CHANNEL: &str = "storehook_due";

/// The channel of mapping reloads; the payload ([`ReloadPayload`]) names the schema as well.
pub(super) const RELOAD_CHANNEL: &str = "storehook_reload";

/// How long the listener waits before connecting again after a failure, at most.
const RECONNECT_AT_MOST: Duration = Duration::from_secs(30);

/// Who announces: one per opened store, so that a store's listener passes over its own
/// reloads.
#[derive(Debug, Clone)]
pub(super) struct Announcer {
    /// The schema the store's tables are in.
    pub schema: String,
    /// Random, made when the store is opened.
    pub instance: String,
    /// The host name and process id, for the other instances' log lines.
    pub label: String,
}

impl Announcer {
    pub fn new(schema: String) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .or_else(|| {
                std::env::var("HOSTNAME")
                    .ok()
                    .filter(|name| !name.is_empty())
            });
        let pid = std::process::id();
        let label = match host {
            Some(host) => format!("host {host} pid {pid}"),
            None => format!("pid {pid}"),
        };
        Announcer {
            schema,
            instance: format!("{:016x}", fastrand::u64(..)),
            label,
        }
    }
}

/// The payload announcing `destination`'s deliveries in `schema`.
fn payload(schema: &str, destination: &str) -> String {
    format!("{schema}/{destination}")
}

/// The payload of a `storehook_reload` notification.
#[derive(Debug, Serialize, Deserialize)]
struct ReloadPayload {
    schema: String,
    /// The announcing store's [`Announcer::instance`].
    instance: String,
    from: String,
    via: String,
    client: String,
}

/// Announces, when the calling transaction commits, that deliveries of these destinations
/// are due (each once: PostgreSQL also folds repeats within a transaction).
pub(super) async fn notify_due<'a>(
    conn: &mut PgConnection,
    schema: &str,
    destinations: impl IntoIterator<Item = &'a String>,
) -> Result<(), sqlx::Error> {
    let mut payloads: Vec<String> = destinations
        .into_iter()
        .map(|d| payload(schema, d))
        .collect();
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

/// Announces now that the mappings of `announcer`'s instance were reloaded.
pub(super) async fn notify_reload(
    pool: &PgPool,
    announcer: &Announcer,
    via: &str,
    client: &str,
) -> Result<(), sqlx::Error> {
    let payload = ReloadPayload {
        schema: announcer.schema.clone(),
        instance: announcer.instance.clone(),
        from: announcer.label.clone(),
        via: via.to_string(),
        client: client.to_string(),
    };
    let payload = serde_json::to_string(&payload).expect("strings serialize");
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(RELOAD_CHANNEL)
        .bind(payload)
        .execute(pool)
        .await?;
    Ok(())
}

/// What a notification announces to `announcer`'s store: `None` for another schema's, for
/// the store's own reload, and for a payload that is not storehook's.
fn heard(channel: &str, payload: &str, announcer: &Announcer) -> Option<Announcement> {
    match channel {
        CHANNEL => {
            let destination = payload.strip_prefix(&announcer.schema)?.strip_prefix('/')?;
            Some(Announcement::Due(destination.to_string()))
        }
        RELOAD_CHANNEL => {
            let reload: ReloadPayload = serde_json::from_str(payload).ok()?;
            if reload.schema != announcer.schema || reload.instance == announcer.instance {
                return None;
            }
            Some(Announcement::Reload(ReloadAnnounced {
                via: reload.via,
                client: reload.client,
                from: reload.from,
            }))
        }
        _ => None,
    }
}

/// Starts listening; the returned receiver gets an [`Announcement`] for every notification
/// of `announcer`'s schema but its own reloads, and [`Announcement::Listening`] after the
/// listener (re)connects. The task ends when the receiver is dropped.
pub(super) fn subscribe(pool: PgPool, announcer: Announcer) -> mpsc::Receiver<Announcement> {
    let (sender, receiver) = mpsc::channel(1024);
    tokio::spawn(async move {
        tokio::select! {
            () = listen(&pool, &announcer, &sender) => {}
            () = sender.closed() => {}
        }
    });
    receiver
}

async fn listen(pool: &PgPool, announcer: &Announcer, sender: &mpsc::Sender<Announcement>) {
    let mut backoff = Duration::from_millis(250);
    let mut again = false;
    loop {
        let mut listener = match connect(pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "cannot LISTEN for announcements; the workers poll meanwhile");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RECONNECT_AT_MOST);
                continue;
            }
        };
        backoff = Duration::from_millis(250);
        tracing::info!(
            schema = %announcer.schema,
            "listening for the other instances' announcements (LISTEN {CHANNEL}, {RELOAD_CHANNEL})"
        );
        // Whatever was announced while no one listened is missed. Sent even to a full
        // queue (a reload after a reconnect must not be dropped).
        if sender
            .send(Announcement::Listening { again })
            .await
            .is_err()
        {
            return;
        }
        again = true;
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    let Some(announced) =
                        heard(notification.channel(), notification.payload(), announcer)
                    else {
                        continue;
                    };
                    match announced {
                        // A full queue already holds wake-ups enough.
                        Announcement::Due(_) => {
                            let _ = sender.try_send(announced);
                        }
                        _ => {
                            if sender.send(announced).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                Ok(None) => {
                    tracing::warn!("the LISTEN connection was lost and made again");
                    if sender
                        .send(Announcement::Listening { again: true })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "LISTEN for announcements failed; connecting again");
                    break;
                }
            }
        }
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([CHANNEL, RELOAD_CHANNEL]).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announcer(schema: &str, instance: &str) -> Announcer {
        Announcer {
            schema: schema.into(),
            instance: instance.into(),
            label: format!("host test pid {instance}"),
        }
    }

    fn reload_from(announcer: &Announcer) -> String {
        serde_json::to_string(&ReloadPayload {
            schema: announcer.schema.clone(),
            instance: announcer.instance.clone(),
            from: announcer.label.clone(),
            via: "admin API".into(),
            client: "10.0.0.7".into(),
        })
        .unwrap()
    }

    #[test]
    fn a_reload_is_heard_by_the_other_instances_of_its_schema_only() {
        let a = announcer("shop", "a");
        let b = announcer("shop", "b");
        let other_schema = announcer("other", "c");
        let payload = reload_from(&a);
        assert_eq!(
            heard(RELOAD_CHANNEL, &payload, &b),
            Some(Announcement::Reload(ReloadAnnounced {
                via: "admin API".into(),
                client: "10.0.0.7".into(),
                from: "host test pid a".into(),
            }))
        );
        assert_eq!(heard(RELOAD_CHANNEL, &payload, &a), None, "its own");
        assert_eq!(
            heard(RELOAD_CHANNEL, &payload, &other_schema),
            None,
            "another schema's"
        );
        assert_eq!(heard(RELOAD_CHANNEL, "not json", &b), None);
    }

    #[test]
    fn a_due_destination_is_heard_in_its_schema_only() {
        let shop = announcer("shop", "a");
        assert_eq!(
            heard(CHANNEL, &payload("shop", "legion"), &shop),
            Some(Announcement::Due("legion".into()))
        );
        assert_eq!(heard(CHANNEL, &payload("shop_2", "legion"), &shop), None);
        assert_eq!(heard(CHANNEL, &payload("other", "legion"), &shop), None);
        assert_eq!(heard("elsewhere", &payload("shop", "legion"), &shop), None);
    }
}
