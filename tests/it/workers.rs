//! Worker lanes: several requests in flight per destination, rounds of several requests a
//! lane that stop when the circuit opens, and a shutdown that gives up the leases of
//! attempts it cannot finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;

use storehook::delivery::{Next, Worker};

use crate::doubles::Double;
use crate::harness::*;

/// A Salekit double that takes `delay` to answer and remembers the most requests it had in
/// flight at once.
async fn slow_salekit(delay: Duration) -> (Arc<AtomicUsize>, Arc<AtomicUsize>, String) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (now, max) = (in_flight.clone(), most.clone());
    let app = Router::new().fallback(move || {
        let (now, max) = (now.clone(), max.clone());
        async move {
            let current = now.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(current, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            now.fetch_sub(1, Ordering::SeqCst);
            r#"{"error": false, "msg": "ok"}"#
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (in_flight, most, url)
}

async fn salekit_app(url: String, concurrency: usize, grace: Duration) -> TestApp {
    spawn_app_configured(
        |env| {
            env.insert("SALEKIT_BASE_URL".into(), url);
            env.insert("SALEKIT_TOKEN".into(), "salekit-token".into());
        },
        move |config| {
            let salekit = config.destinations.get_mut("salekit").unwrap();
            salekit.rate_limit_per_second = None;
            salekit.concurrency = concurrency;
            config.delivery.shutdown_grace = grace;
        },
    )
    .await
}

async fn all_salekit_delivered(app: &TestApp, count: usize) {
    app.wait_for_deliveries(|rows| {
        rows.iter()
            .filter(|r| r.mapping.ends_with("salekit-audience") && r.status == "delivered")
            .count()
            == count
    })
    .await;
}

#[tokio::test]
async fn a_destination_has_as_many_requests_in_flight_as_its_concurrency() {
    let (_, most, url) = slow_salekit(Duration::from_millis(300)).await;
    let app = salekit_app(url, 4, Duration::from_secs(10)).await;
    app.post_paid_haravan_orders(1_000_000, 8).await;
    all_salekit_delivered(&app, 8).await;
    let most = most.load(Ordering::SeqCst);
    assert!((2..=4).contains(&most), "{most} requests in flight at most");
}

#[tokio::test]
async fn a_concurrency_of_one_sends_one_request_at_a_time() {
    let (_, most, url) = slow_salekit(Duration::from_millis(100)).await;
    let app = salekit_app(url, 1, Duration::from_secs(10)).await;
    app.post_paid_haravan_orders(1_000_000, 4).await;
    all_salekit_delivered(&app, 4).await;
    assert_eq!(most.load(Ordering::SeqCst), 1);
}

/// Once `arrived` counts a request at the destination, stops the app; the one Salekit
/// delivery, as the stop left it.
async fn stop_once_a_request_arrived(app: &mut TestApp, arrived: &AtomicUsize) -> DeliveryRow {
    wait_until("a request at Salekit", || {
        arrived.load(Ordering::SeqCst) > 0
    })
    .await;
    app.stop().await;
    let mut salekit: Vec<DeliveryRow> = app
        .delivery_rows()
        .await
        .into_iter()
        .filter(|r| r.mapping.ends_with("salekit-audience"))
        .collect();
    assert_eq!(salekit.len(), 1);
    salekit.remove(0)
}

#[tokio::test]
async fn shutdown_finishes_attempts_in_flight() {
    let (in_flight, _, url) = slow_salekit(Duration::from_millis(700)).await;
    let mut app = salekit_app(url, 1, Duration::from_secs(10)).await;
    app.post_paid_haravan_orders(1_000_000, 1).await;
    let salekit = stop_once_a_request_arrived(&mut app, &in_flight).await;
    assert_eq!(salekit.status, "delivered");
}

#[tokio::test]
async fn shutdown_releases_the_leases_of_attempts_it_cannot_finish() {
    // A destination that takes every connection and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    let mut app = salekit_app(url, 2, Duration::from_millis(300)).await;
    app.post_paid_haravan_orders(1_000_000, 1).await;
    app.wait_for_status("haravan/salekit-audience", "in_flight")
        .await;
    let salekit = stop_once_a_request_arrived(&mut app, &accepted).await;
    assert_eq!(salekit.status, "pending", "{:?}", salekit);
    assert_eq!(salekit.attempts, 0, "the abandoned attempt is not counted");
    assert_eq!(salekit.lease_until, None);
}

/// When the grace runs out, the attempts that were answered are recorded and only the leases
/// of those still unanswered are released: nothing answered is sent again after a restart.
#[tokio::test]
async fn shutdown_records_what_was_answered_and_releases_only_the_rest() {
    // The first request is answered once a second one is in flight (both in one round),
    // the second never.
    let arrived = Arc::new(AtomicUsize::new(0));
    let counter = arrived.clone();
    let salekit = Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                for _ in 0..200 {
                    if counter.load(Ordering::SeqCst) >= 2 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                r#"{"error": false, "msg": "ok"}"#
            } else {
                std::future::pending::<&'static str>().await
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, salekit).await });
    let mut app = salekit_app(url, 2, Duration::from_millis(500)).await;
    app.post_paid_haravan_orders(1_000_000, 2).await;
    wait_until("two requests at Salekit", || {
        arrived.load(Ordering::SeqCst) >= 2
    })
    .await;
    app.stop().await;
    let mut salekit: Vec<(String, i64)> = app
        .delivery_rows()
        .await
        .into_iter()
        .filter(|r| r.mapping.ends_with("salekit-audience"))
        .map(|r| (r.status, r.attempts))
        .collect();
    salekit.sort();
    assert_eq!(
        salekit,
        [("delivered".to_string(), 1), ("pending".to_string(), 0)]
    );
}

/// An app whose `destination`, reached through `env`, sends one request at a time without a
/// rate limit, and whose circuit opens after two failures in a row for longer than a test
/// (a failed attempt's retry comes as late); with that destination's worker, which the test
/// steps (the app does not run it).
async fn one_lane_opening_after_two_failures(
    destination: &'static str,
    env: [(&'static str, String); 2],
) -> (TestApp, Worker) {
    let (app, mut workers) = spawn_app_stepping(
        move |vars| {
            for (name, value) in env {
                vars.insert(name.into(), value);
            }
        },
        move |config| {
            let destination = config.destinations.get_mut(destination).unwrap();
            destination.rate_limit_per_second = None;
            destination.concurrency = 1;
            destination.retry_schedule = vec![Duration::from_secs(600)];
            destination.breaker_failures = 2;
            destination.breaker_cool_down = Duration::from_secs(600);
        },
        &[destination],
    )
    .await;
    (app, workers.remove(0))
}

/// Steps `worker` once more and checks that the open circuit holds it: nothing claimed.
async fn paused(worker: &Worker) {
    let turn = worker.step().await.unwrap();
    assert_eq!((turn.claimed, turn.attempts), (0, 0), "{turn:?}");
    assert!(
        matches!(turn.next, Next::Pause(left) if left > Duration::from_secs(500)),
        "{turn:?}"
    );
}

/// A round holds several requests a lane; once the circuit opens, the rest of the round is
/// not sent, and its deliveries are given back untouched for after the cool-down.
#[tokio::test]
async fn the_rest_of_a_round_is_not_sent_once_the_circuit_opens() {
    let (salekit, url) = Double::start_with(|_| (503, vec![], "down".into())).await;
    let (app, worker) = one_lane_opening_after_two_failures(
        "salekit",
        [
            ("SALEKIT_BASE_URL", url),
            ("SALEKIT_TOKEN", "salekit-token".into()),
        ],
    )
    .await;
    // All stored before the worker's first round, which takes them together.
    app.post_paid_haravan_orders(1_000_000, 6).await;
    let round = worker.step().await.unwrap();
    // The round has ended: a request it did not send by now, it never sends.
    assert_eq!(
        (round.claimed, round.attempts, round.given_back),
        (6, 2, 4),
        "{round:?}"
    );
    assert_eq!(round.next, Next::Pause(Duration::from_secs(600)));
    assert_eq!(salekit.received().len(), 2, "sent after the circuit opened");
    paused(&worker).await;
    assert_eq!(salekit.received().len(), 2, "sent during the cool-down");
    let rows: Vec<DeliveryRow> = app
        .delivery_rows()
        .await
        .into_iter()
        .filter(|r| r.mapping.ends_with("salekit-audience"))
        .collect();
    assert_eq!(rows.iter().filter(|r| r.attempts == 1).count(), 2);
    assert!(rows.iter().all(|r| r.status == "pending"), "{rows:#?}");
    let untouched: Vec<i64> = rows
        .iter()
        .filter(|r| r.mapping.ends_with("salekit-audience") && r.attempts == 0)
        .map(|r| r.id)
        .collect();
    assert_eq!(untouched.len(), 4, "{rows:#?}");
    for id in untouched {
        let delivery = app
            .store
            .get_delivery(DeliveryId(id))
            .await
            .unwrap()
            .unwrap();
        let (status, lease) = (delivery.summary.status, delivery.lease_until);
        assert_eq!(
            (status, lease),
            (DeliveryStatus::Pending, None),
            "delivery {id}"
        );
    }
}

/// A refused batch is sent again one event a request; when those requests open the circuit,
/// the events not yet sent alone are given back too, not left leased until the lease ends.
#[tokio::test]
async fn the_circuit_opening_during_a_split_batch_gives_back_the_events_not_sent() {
    let (legion, url) = Double::start_with(|_| (503, vec![], "down".into())).await;
    // The first request (the first order alone) fails and is retried much later; the batch
    // of the orders posted after it is refused, so it is split.
    legion.answer(503, vec![], "down");
    legion.answer(
        400,
        vec![],
        r#"{"status": "error", "message": "bad event"}"#,
    );
    let (app, worker) = one_lane_opening_after_two_failures(
        "legion",
        [
            ("LEGION_BASE_URL", url),
            ("LEGION_API_KEY", "legion-key".into()),
        ],
    )
    .await;
    app.post_paid_haravan_orders(1_000_000, 1).await;
    let first = worker.step().await.unwrap();
    assert_eq!((first.claimed, first.attempts), (1, 1), "{first:?}");
    assert_eq!(
        first.next,
        Next::Linger,
        "one failure: the circuit stays closed"
    );
    app.post_paid_haravan_orders(1_000_001, 4).await;
    // The batch + 2 events alone, then the circuit is open; the round has ended.
    let split = worker.step().await.unwrap();
    assert_eq!(
        (split.claimed, split.attempts, split.given_back),
        (4, 3, 2),
        "{split:?}"
    );
    assert_eq!(split.next, Next::Pause(Duration::from_secs(600)));
    let received = legion.received();
    assert_eq!(received.len(), 4, "sent after the circuit opened");
    let batch = received[1].body.as_array().unwrap().len();
    assert_eq!(batch, 4, "the batch held {batch} events");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let leased_to_legion = DeliveryFilter {
        status: Some(DeliveryStatus::InFlight),
        destination: Some("legion".into()),
        ..DeliveryFilter::default()
    };
    loop {
        let leased = app
            .store
            .list_deliveries(&leased_to_legion)
            .await
            .unwrap()
            .len();
        if leased == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{leased} Legion deliveries still leased with the circuit open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    paused(&worker).await;
    assert_eq!(legion.received().len(), 4, "sent during the cool-down");
}
