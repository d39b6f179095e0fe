//! Both paths against a fake producer that writes through the real channel writer:
//! identical bodies, producer restarts, stale or foreign slot contents never served,
//! the error statuses, the slot pool, and graceful shutdown with a request in flight.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::fake_producer::{users_json, Behaviour, Event, FakeProducer};
use common::{get, settings, watchdog};
use rust_gateway::{app, AppState};

const API: &str = "/api/users-via-api";
const SHM: &str = "/api/users-via-shm";

async fn setup(request_slots: u32, extra: &[&str]) -> (tempfile::TempDir, FakeProducer, AppState, axum::Router) {
    let dir = tempfile::tempdir().unwrap();
    let producer = FakeProducer::start(dir.path(), request_slots).await;
    let state = AppState::new(settings(&producer.url, dir.path(), extra)).unwrap();
    let router = app(state.clone());
    (dir, producer, state, router)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_paths_serve_the_same_bytes() {
    let (_dir, _producer, _state, app) = setup(4, &[]).await;
    // 1000 users is past the 256 KiB mark: read and validation run on the blocking pool.
    for count in [0u32, 2, 1000, 2, 0] {
        let expected = users_json(count);
        let api = get(&app, &format!("{API}?count={count}")).await;
        let shm = get(&app, &format!("{SHM}?count={count}")).await;
        for answer in [&api, &shm] {
            assert_eq!(answer.status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer.body));
            assert_eq!(answer.content_type.as_deref(), Some("application/json"));
            assert_eq!(answer.body, expected, "count {count}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_count_serves_the_original_services_100_users_on_both_paths() {
    let (_dir, _producer, _state, app) = setup(4, &[]).await;
    for url in [API, SHM, &format!("{API}?"), &format!("{SHM}?")] {
        let answer = get(&app, url).await;
        assert_eq!(answer.status, StatusCode::OK, "{url}: {}", String::from_utf8_lossy(&answer.body));
        assert_eq!(answer.body, users_json(100), "{url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_never_see_each_others_data() {
    let (_dir, _producer, _state, app) = setup(4, &[]).await;
    let tasks: Vec<_> = (0..24u32)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let count = 1 + (i * 37) % 300;
                (count, get(&app, &format!("{SHM}?count={count}")).await)
            })
        })
        .collect();
    for task in tasks {
        let (count, answer) = task.await.unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer.body));
        assert_eq!(answer.body, users_json(count));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_producer_is_followed_without_restarting_the_gateway() {
    let (_dir, producer, state, app) = setup(4, &[]).await;
    assert_eq!(get(&app, &format!("{SHM}?count=2")).await.status, StatusCode::OK);
    let first_epoch = producer.epoch();

    producer.restart(4);
    assert_ne!(producer.epoch(), first_epoch);
    let answer = get(&app, &format!("{SHM}?count=3")).await;
    assert_eq!(answer.body, users_json(3));
    assert_eq!(state.client.ready().unwrap(), producer.epoch());

    // A different geometry rebuilds the slot pool.
    producer.restart(6);
    assert_eq!(get(&app, &format!("{SHM}?count=4")).await.body, users_json(4));
    assert_eq!(state.client.stats().slots, 5);

    // A stopped producer's file is gone: a channel error, until it is back.
    producer.stop_channel();
    get(&app, &format!("{SHM}?count=2")).await.assert_error(StatusCode::BAD_GATEWAY, "channel_error");
    producer.restart(4);
    assert_eq!(get(&app, &format!("{SHM}?count=2")).await.body, users_json(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_holding_another_request_is_never_served() {
    let (_dir, producer, _state, app) = setup(2, &[]).await;
    producer.set(Behaviour::WrongRequestId);
    let detail = get(&app, &format!("{SHM}?count=2")).await.assert_error(StatusCode::BAD_GATEWAY, "invalid_payload");
    assert!(detail.contains("not the expected request"), "{detail}");

    // The slot now holds a payload for a request id that was never ours; a producer that
    // answers without writing leaves exactly that stale payload behind.
    producer.set(Behaviour::AnswerWithoutWriting);
    let detail = get(&app, &format!("{SHM}?count=2")).await.assert_error(StatusCode::BAD_GATEWAY, "invalid_payload");
    assert!(detail.contains("not the expected request"), "{detail}");

    producer.set(Behaviour::Normal);
    assert_eq!(get(&app, &format!("{SHM}?count=2")).await.body, users_json(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_payloads_fail_validation_on_both_paths_unless_it_is_off() {
    let (_dir, producer, _state, app) = setup(2, &[]).await;
    producer.set(Behaviour::ShortPayload);
    for path in [API, SHM] {
        let detail =
            get(&app, &format!("{path}?count=3")).await.assert_error(StatusCode::BAD_GATEWAY, "invalid_payload");
        assert!(detail.contains("holds 2 users, not the 3"), "{detail}");
    }
    let (_dir, producer, _state, app) = setup(2, &["--validation", "none"]).await;
    producer.set(Behaviour::ShortPayload);
    for path in [API, SHM] {
        assert_eq!(get(&app, &format!("{path}?count=3")).await.body, users_json(2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_error_statuses_are_mapped() {
    let (_dir, producer, _state, app) = setup(2, &[]).await;
    producer.set(Behaviour::Status(507, "payload of 9 bytes does not fit".into()));
    for path in [API, SHM] {
        let detail = get(&app, &format!("{path}?count=2"))
            .await
            .assert_error(StatusCode::INSUFFICIENT_STORAGE, "payload_too_large");
        assert_eq!(detail, "payload of 9 bytes does not fit");
    }
    producer.set(Behaviour::Status(409, "slot 0 is busy".into()));
    for path in [API, SHM] {
        let detail =
            get(&app, &format!("{path}?count=2")).await.assert_error(StatusCode::BAD_GATEWAY, "producer_error");
        assert!(detail.contains("409") && detail.contains("slot 0 is busy"), "{detail}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_over_the_slot_capacity_is_507_with_the_producers_reason() {
    let (_dir, _producer, _state, app) = setup(2, &[]).await;
    // The fake's slots hold 1 MiB; 5000 users are about 1.3 MB. The fake answers with
    // the core's own message (the real producer adds its setting's name to it).
    let detail = get(&app, &format!("{SHM}?count=5000"))
        .await
        .assert_error(StatusCode::INSUFFICIENT_STORAGE, "payload_too_large");
    assert!(detail.contains("the slot capacity is 1048576 bytes"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_answer_over_the_payload_limit_is_507_naming_the_setting() {
    let (_dir, _producer, _state, app) = setup(2, &["--max-payload-bytes", "100000"]).await;
    // 1000 users are about 287 KB, over the 100,000-byte limit; 2 users are not.
    let detail = get(&app, &format!("{API}?count=1000"))
        .await
        .assert_error(StatusCode::INSUFFICIENT_STORAGE, "payload_too_large");
    assert!(detail.contains("limit of 100000 bytes") && detail.contains("--max-payload-bytes"), "{detail}");
    assert_eq!(get(&app, &format!("{API}?count=2")).await.body, users_json(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_write_is_504_and_its_late_write_is_never_served() {
    watchdog(async {
        // One slot in the pool, so the next request must reuse the quarantined slot.
        let (_dir, producer, state, app) = setup(2, &["--producer-timeout-ms", "1000"]).await;
        producer.set(Behaviour::Hold);
        let detail =
            get(&app, &format!("{SHM}?count=2")).await.assert_error(StatusCode::GATEWAY_TIMEOUT, "producer_timeout");
        assert!(detail.contains("1000 ms") && detail.contains("--producer-timeout-ms"), "{detail}");
        let Event::Arrived { slot, request_id } = producer.next_event().await else { panic!("expected an arrival") };
        let stats = state.client.stats();
        assert_eq!(stats.slots_in_use, stats.slots, "the slot is in quarantine");

        // The late write lands in the quarantined slot.
        producer.set(Behaviour::Normal);
        producer.release();
        assert_eq!(producer.next_event().await, Event::Written { slot, request_id });

        // The next request waits out the quarantine (slot wait 5 s, quarantine 2 s) and gets
        // its own payload, not the late one.
        let answer = get(&app, &format!("{SHM}?count=3")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer.body));
        assert_eq!(answer.body, users_json(3));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_free_slot_is_503() {
    watchdog(async {
        let (_dir, producer, _state, app) = setup(2, &["--slot-wait-timeout-ms", "0"]).await;
        producer.set(Behaviour::Hold);
        let held = {
            let app = app.clone();
            tokio::spawn(async move { get(&app, &format!("{SHM}?count=2")).await })
        };
        assert!(matches!(producer.next_event().await, Event::Arrived { .. }));
        let detail =
            get(&app, &format!("{SHM}?count=2")).await.assert_error(StatusCode::SERVICE_UNAVAILABLE, "no_free_slot");
        assert!(detail.contains("--slot-wait-timeout-ms"), "{detail}");
        producer.release();
        assert_eq!(held.await.unwrap().body, users_json(2));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_the_request_in_flight_finish() {
    watchdog(async {
        let dir = tempfile::tempdir().unwrap();
        let producer = Arc::new(FakeProducer::start(dir.path(), 2).await);
        let state = AppState::new(settings(&producer.url, dir.path(), &[])).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{SHM}?count=5", listener.local_addr().unwrap());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app(state))
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await
        });

        producer.set(Behaviour::Hold);
        let client = reqwest::Client::new();
        let in_flight = tokio::spawn(async move { client.get(url).send().await.unwrap().bytes().await.unwrap() });
        assert!(matches!(producer.next_event().await, Event::Arrived { .. }));
        stop_tx.send(()).unwrap();
        producer.release();
        assert_eq!(in_flight.await.unwrap(), users_json(5));
        server.await.unwrap().unwrap();
    })
    .await;
}
