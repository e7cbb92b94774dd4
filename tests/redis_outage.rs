//! Redis killed and restarted on the same port under two servers and a
//! worker: broadcasts during the outage fail within the command timeout
//! (default 2 s) and still reach local sockets; afterwards delivery resumes
//! by itself.

mod redis_common;

use std::time::{Duration, Instant};

use broadcast_core::redis::{DEFAULT_COMMAND_TIMEOUT, PublishError, RedisConfig};
use broadcast_core::{BroadcastError, TransportError};
use broadcast_test_support::redis::{HarnessError, RedisServer};
use broadcast_test_support::sio_client::SioClient;
use redis_common::{MessagePosted, Node, QUIET, WAIT, init_tracing, next_text};

/// The bound on resumption after Redis is back.
const RESUME_BOUND: Duration = Duration::from_secs(5);
/// Slack over the command timeout for scheduling on a loaded machine.
const SLACK: Duration = Duration::from_millis(500);

/// Broadcasts `{prefix}-N` with `send` every ~200 ms until `receiver` gets
/// one of them (within [`RESUME_BOUND`]); returns how long that took.
async fn until_delivered<F, Fut>(
    receiver: &mut SioClient,
    prefix: &str,
    mut send: F,
) -> Option<Duration>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let t0 = Instant::now();
    let mut n = 0;
    while t0.elapsed() < RESUME_BOUND {
        n += 1;
        send(format!("{prefix}-{n}")).await;
        let deadline = Instant::now() + Duration::from_millis(200);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match next_text(receiver, left).await {
                Some(text) if text.starts_with(prefix) => return Some(t0.elapsed()),
                Some(_) => {}
                None => break,
            }
        }
    }
    None
}

#[tokio::test]
async fn redis_restart_errors_in_time_keeps_local_delivery_and_resumes_by_itself()
-> Result<(), HarnessError> {
    init_tracing();
    let Some(mut redis) = RedisServer::start().await? else {
        return Ok(());
    };
    // Default settings: the 2 s command timeout is what is being tested.
    let config = || RedisConfig::from_url(&redis.url()).unwrap();
    let a = Node::start(config(), &[]).await;
    let b = Node::start(config(), &[]).await;
    let worker = broadcast_core::redis::worker(config()).await.unwrap();
    let mut a1 = a.client("/", &["chat|1"]).await;
    let mut b1 = b.client("/", &["chat|1"]).await;

    a.parts
        .broadcaster
        .broadcast(MessagePosted {
            chat_id: 1,
            text: "before".into(),
        })
        .await
        .unwrap();
    assert_eq!(next_text(&mut b1, WAIT).await.as_deref(), Some("before"));
    assert_eq!(next_text(&mut a1, WAIT).await.as_deref(), Some("before"));

    redis.kill().await?;

    // A server: error within the timeout, saying remote delivery failed,
    // and its own sockets got the event.
    let t0 = Instant::now();
    let err = a
        .parts
        .broadcaster
        .broadcast(MessagePosted {
            chat_id: 1,
            text: "during".into(),
        })
        .await
        .unwrap_err();
    let server_error_after = t0.elapsed();
    eprintln!("server broadcast during outage failed after {server_error_after:?}: {err}");
    assert!(server_error_after <= DEFAULT_COMMAND_TIMEOUT + SLACK);
    match &err {
        BroadcastError::Transport {
            event,
            namespace,
            source: TransportError::RemoteFailed(inner),
        } => {
            assert_eq!(*event, "message_posted");
            assert!(namespace.contains("chat|1"), "{namespace}");
            let publish = inner
                .downcast_ref::<PublishError>()
                .expect("a PublishError");
            assert_eq!(publish.channel(), "socket.io-request#/#");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("remote delivery failed"), "{err}");
    assert!(err.delivered_locally(), "{err:?}");
    assert_eq!(next_text(&mut a1, QUIET).await.as_deref(), Some("during"));
    let stats = a.parts.connection.stats();
    assert_eq!(
        (stats.local_only, stats.publish_failed),
        (1, 1),
        "{stats:?}"
    );

    // A worker: a typed timeout within the timeout.
    let t0 = Instant::now();
    let err = worker
        .broadcaster
        .broadcast(MessagePosted {
            chat_id: 1,
            text: "worker during".into(),
        })
        .await
        .unwrap_err();
    let worker_error_after = t0.elapsed();
    assert!(!err.delivered_locally(), "{err:?}");
    eprintln!("worker broadcast during outage failed after {worker_error_after:?}: {err}");
    assert!(worker_error_after <= DEFAULT_COMMAND_TIMEOUT + SLACK);
    assert!(
        matches!(
            err,
            BroadcastError::Transport { source: TransportError::Timeout(d), .. } if d == DEFAULT_COMMAND_TIMEOUT
        ) || matches!(
            err,
            BroadcastError::Transport {
                source: TransportError::Adapter(_),
                ..
            }
        ),
        "{err:?}"
    );
    // Nothing crossed to B while Redis was down.
    b1.expect_silence(QUIET).await.unwrap();

    redis.restart().await?;
    let restarted = Instant::now();

    // Server A -> client on B, with no reconnect code here.
    let broadcaster = a.parts.broadcaster.clone();
    let resumed = until_delivered(&mut b1, "a-after", |text| {
        let broadcaster = broadcaster.clone();
        async move {
            let _ = broadcaster
                .broadcast(MessagePosted { chat_id: 1, text })
                .await;
        }
    })
    .await;
    let a_to_b = restarted.elapsed();
    eprintln!("server A -> server B resumed {a_to_b:?} after the restart (poll {resumed:?})");
    assert!(
        resumed.is_some(),
        "A -> B did not resume within {RESUME_BOUND:?}"
    );

    // Server B -> client on A, and worker -> both.
    let broadcaster = b.parts.broadcaster.clone();
    let resumed = until_delivered(&mut a1, "b-after", |text| {
        let broadcaster = broadcaster.clone();
        async move {
            let _ = broadcaster
                .broadcast(MessagePosted { chat_id: 1, text })
                .await;
        }
    })
    .await;
    assert!(resumed.is_some(), "B -> A did not resume");
    let broadcaster = worker.broadcaster.clone();
    let resumed = until_delivered(&mut b1, "w-after", |text| {
        let broadcaster = broadcaster.clone();
        async move {
            let _ = broadcaster
                .broadcast(MessagePosted { chat_id: 1, text })
                .await;
        }
    })
    .await;
    let all_resumed = restarted.elapsed();
    eprintln!("all directions resumed {all_resumed:?} after the restart");
    assert!(resumed.is_some(), "worker -> B did not resume");
    assert!(
        all_resumed <= RESUME_BOUND + RESUME_BOUND,
        "{all_resumed:?}"
    );

    // Once resumed, a broadcast succeeds and reaches both servers' sockets.
    while a1.try_next_event().is_some() || b1.try_next_event().is_some() {}
    tokio::time::sleep(QUIET).await;
    while a1.try_next_event().is_some() || b1.try_next_event().is_some() {}
    a.parts
        .broadcaster
        .broadcast(MessagePosted {
            chat_id: 1,
            text: "steady".into(),
        })
        .await
        .unwrap();
    assert_eq!(next_text(&mut a1, WAIT).await.as_deref(), Some("steady"));
    assert_eq!(next_text(&mut b1, WAIT).await.as_deref(), Some("steady"));

    // The retry of a broadcast delivered locally: the other server's
    // sockets get it, this server's do not get it twice (shown by order:
    // A's client gets the next broadcast first).
    let outcome = a
        .parts
        .remote
        .broadcast(MessagePosted {
            chat_id: 1,
            text: "retried".into(),
        })
        .await
        .unwrap();
    assert_eq!(outcome.remote_receivers("/"), Some(1), "{outcome:?}");
    assert_eq!(next_text(&mut b1, WAIT).await.as_deref(), Some("retried"));
    a.parts
        .broadcaster
        .broadcast(MessagePosted {
            chat_id: 1,
            text: "after the retry".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut a1, WAIT).await.as_deref(),
        Some("after the retry")
    );
    assert_eq!(
        next_text(&mut b1, WAIT).await.as_deref(),
        Some("after the retry")
    );

    for node in [&a, &b] {
        let s = node.parts.connection.stats();
        assert!(s.reconnects >= 1 && s.resubscribes >= 3, "{s:?}");
        assert_eq!(s.lagged, 0);
    }
    assert!(worker.connection.stats().reconnects >= 1);

    worker.connection.shutdown().await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}
