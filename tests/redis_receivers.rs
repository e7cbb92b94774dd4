//! Outcomes that tell the truth after a Redis restart: a broadcast published
//! while the other servers are not subscribed says that nobody received it,
//! and their health check says they are not ready, until they have
//! re-subscribed.
//!
//! "Not re-subscribed yet" is made deterministic rather than raced: Redis
//! comes back from the restart with an ACL that refuses SSUBSCRIBE (saved
//! in its ACL file before the restart), so the servers reconnect and keep
//! failing to re-subscribe until the test allows it again.

mod redis_common;

use std::time::Duration;

use broadcast_core::redis::RedisConfig;
use broadcast_test_support::HarnessError;
use broadcast_test_support::env::TempDir;
use broadcast_test_support::redis::RedisServer;
use redis_common::{MessagePosted, Node, QUIET, WAIT, init_tracing, next_text, poll_until};

/// Generous bound on reconnecting and re-subscribing (fred's reconnect
/// delay plus the re-subscriber's backoff of at most 2 s); polled, not
/// waited.
const SETTLE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

fn posted(text: &str) -> MessagePosted {
    MessagePosted {
        chat_id: 1,
        text: text.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_and_readiness_follow_the_subscriptions_across_a_restart()
-> Result<(), HarnessError> {
    init_tracing();
    let acl_dir = TempDir::new("redis-receivers-acl")?;
    let acl_file = acl_dir.path().join("users.acl");
    std::fs::write(&acl_file, "user default on nopass ~* &* +@all\n")
        .expect("writing the ACL file");
    let acl_arg = acl_file.to_string_lossy().into_owned();
    let Some(mut redis) = RedisServer::start_with_args(&["--aclfile", &acl_arg]).await? else {
        return Ok(());
    };
    let config = || RedisConfig::from_url(&redis.url()).unwrap();
    let a = Node::start(config(), &[]).await;
    let b = Node::start(config(), &[]).await;
    let worker = broadcast_core::redis::worker(config()).await.unwrap();
    let mut a1 = a.client("/", &["chat|1"]).await;
    let mut b1 = b.client("/", &["chat|1"]).await;

    // Steady state: the other server received it; a worker reaches both.
    assert!(a.parts.connection.is_ready() && b.parts.connection.is_ready());
    let outcome = a.parts.broadcaster.broadcast(posted("one")).await.unwrap();
    assert_eq!(outcome.remote_receivers("/"), Some(1), "{outcome:?}");
    assert_eq!(outcome.remote_receivers("/admin"), None);
    assert_eq!(next_text(&mut a1, WAIT).await.as_deref(), Some("one"));
    assert_eq!(next_text(&mut b1, WAIT).await.as_deref(), Some("one"));
    let outcome = worker.broadcaster.broadcast(posted("two")).await.unwrap();
    assert_eq!(outcome.remote_receivers("/"), Some(2), "{outcome:?}");
    assert_eq!(next_text(&mut a1, WAIT).await.as_deref(), Some("two"));
    assert_eq!(next_text(&mut b1, WAIT).await.as_deref(), Some("two"));
    assert_eq!(a.parts.connection.stats().no_receivers, 0);
    assert_eq!(worker.connection.stats().no_receivers, 0);

    // The restarted Redis refuses SSUBSCRIBE until told otherwise.
    let _: () = redis
        .command(["ACL", "SETUSER", "default", "-ssubscribe"])
        .await?;
    let _: () = redis.command(["ACL", "SAVE"]).await?;
    redis.restart().await?;

    // Both servers are back on the connection but hold no subscription.
    for node in [&a, &b] {
        let reconnected_and_refused = poll_until(SETTLE, POLL, || async {
            let s = node.parts.connection.stats();
            (node.parts.connection.is_connected() && s.reconnects >= 1 && s.resubscribe_failed >= 1)
                .then_some(())
        })
        .await;
        assert!(
            reconnected_and_refused.is_some(),
            "{:?}",
            node.parts.connection
        );
        assert!(
            !node.parts.connection.is_ready(),
            "{:?}",
            node.parts.connection
        );
    }

    // Published while nobody is subscribed: a success that says so.
    let outcome = a.parts.broadcaster.broadcast(posted("lost")).await.unwrap();
    assert_eq!(outcome.remote_receivers("/"), Some(0), "{outcome:?}");
    assert_eq!(next_text(&mut a1, WAIT).await.as_deref(), Some("lost"));
    let outcome = worker
        .broadcaster
        .broadcast(posted("lost too"))
        .await
        .unwrap();
    assert_eq!(outcome.remote_receivers("/"), Some(0), "{outcome:?}");
    assert_eq!(a.parts.connection.stats().no_receivers, 1);
    assert_eq!(worker.connection.stats().no_receivers, 1);

    // Re-subscribing allowed: the servers recover by themselves.
    let _: () = redis
        .command(["ACL", "SETUSER", "default", "+ssubscribe"])
        .await?;
    for node in [&a, &b] {
        let ready = poll_until(SETTLE, POLL, || async {
            node.parts.connection.is_ready().then_some(())
        })
        .await;
        assert!(ready.is_some(), "{:?}", node.parts.connection);
    }
    let outcome = a.parts.broadcaster.broadcast(posted("back")).await.unwrap();
    assert_eq!(outcome.remote_receivers("/"), Some(1), "{outcome:?}");
    let outcome = worker
        .broadcaster
        .broadcast(posted("back too"))
        .await
        .unwrap();
    assert_eq!(outcome.remote_receivers("/"), Some(2), "{outcome:?}");
    // In order: B's client got neither lost message, A's got its own.
    assert_eq!(next_text(&mut b1, WAIT).await.as_deref(), Some("back"));
    assert_eq!(next_text(&mut b1, WAIT).await.as_deref(), Some("back too"));
    assert_eq!(next_text(&mut a1, WAIT).await.as_deref(), Some("back"));
    assert_eq!(next_text(&mut a1, WAIT).await.as_deref(), Some("back too"));
    b1.expect_silence(QUIET).await.unwrap();
    for (stats, lost) in [
        (a.parts.connection.stats(), 1),
        (b.parts.connection.stats(), 0),
        (worker.connection.stats(), 1),
    ] {
        assert_eq!(stats.no_receivers, lost, "{stats:?}");
    }

    worker.connection.shutdown().await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}
