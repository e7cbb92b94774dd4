//! The Postgres outbox against a real PostgreSQL, a real socketioxide server
//! on loopback and real Socket.IO clients: nothing is sent on rollback,
//! exactly once on commit, failing rows are parked without holding up other
//! rooms, and two relays at once deliver every row once, in order.

mod outbox_common;

use std::time::Duration;

use broadcast_core::outbox::{Outbox, OutboxError, Relay, Written};
use broadcast_core::transport::SocketIoTransport;
use broadcast_core::{BroadcastError, Broadcaster};
use outbox_common::*;

#[tokio::test]
async fn rollback_sends_nothing_and_commit_sends_exactly_once() {
    init_tracing();
    let Some((_db, pool)) = database("rollback_sends_nothing_and_commit_sends_exactly_once").await
    else {
        return;
    };
    let (http, io) = local_server().await;
    let b = Broadcaster::socketio(io);
    let relay = Relay::builder(pool.clone(), b.clone())
        .poll_interval(Duration::from_millis(100))
        .spawn();
    let mut c = client(http.addr, &["r1"]).await;

    let mut tx = pool.begin().await.unwrap();
    let w = b
        .broadcast(Numbered::new("r1", 0, 1))
        .after_commit(&mut tx)
        .await
        .unwrap();
    assert!(w.is_stored());
    tx.rollback().await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    let Written::Stored { seq, stream, .. } = b
        .broadcast(Numbered::new("r1", 0, 2))
        .after_commit(&mut tx)
        .await
        .unwrap()
    else {
        panic!("not stored");
    };
    // The rolled-back row took no number: numbers follow commits.
    assert_eq!((seq, stream.as_str()), (1, "/#r1"));
    // Not visible to the relay before the commit.
    c.expect_silence(QUIET).await.unwrap();
    tx.commit().await.unwrap();

    let got = collect_numbered(&mut c, 1, QUIET).await;
    assert_eq!(got, [("r1".to_string(), 0, 2)]);
    assert_eq!(Outbox::default().pending(&pool).await.unwrap(), 0);
    let stats = relay.stats();
    assert_eq!((stats.delivered, stats.duplicates, stats.failed), (1, 0, 0));
    relay.shutdown().await;
}

#[tokio::test]
async fn a_pipeline_error_fails_the_call_and_writes_nothing() {
    init_tracing();
    let Some((_db, pool)) = database("a_pipeline_error_fails_the_call_and_writes_nothing").await
    else {
        return;
    };
    let (_http, io) = local_server().await;
    let b = Broadcaster::builder(SocketIoTransport::new(io))
        .max_payload_bytes(64)
        .build();
    let mut tx = pool.begin().await.unwrap();
    let err = b
        .broadcast(Numbered {
            pad: "x".repeat(100),
            ..Numbered::new("r1", 0, 1)
        })
        .after_commit(&mut tx)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            OutboxError::Broadcast(BroadcastError::PayloadTooLarge {
                event: "numbered",
                ..
            })
        ),
        "{err}"
    );
    let err = b
        .broadcast(Numbered::new("", 0, 1))
        .after_commit(&mut tx)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("event `numbered`: invalid target"),
        "{err}"
    );
    // The transaction is still usable: the caller decides.
    tx.commit().await.unwrap();
    assert_eq!(Outbox::default().pending(&pool).await.unwrap(), 0);
}

#[tokio::test]
async fn a_failing_row_is_retried_then_parked_without_blocking_other_rooms() {
    init_tracing();
    let Some((_db, pool)) =
        database("a_failing_row_is_retried_then_parked_without_blocking_other_rooms").await
    else {
        return;
    };
    let (http, io) = local_server().await;
    let b = Broadcaster::socketio(io);
    let relay = Relay::builder(pool.clone(), b.clone())
        .poll_interval(Duration::from_millis(50))
        .max_attempts(3)
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .spawn();
    let mut c = client(http.addr, &["r1"]).await;

    let mut tx = pool.begin().await.unwrap();
    b.broadcast(Stray { n: 1 })
        .after_commit(&mut tx)
        .await
        .unwrap();
    b.broadcast(Stray { n: 2 })
        .after_commit(&mut tx)
        .await
        .unwrap();
    b.broadcast(Numbered::new("r1", 0, 1))
        .after_commit(&mut tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // Another room is not held up by the failing one.
    let got = collect_numbered(&mut c, 1, Duration::from_millis(10)).await;
    assert_eq!(got, [("r1".to_string(), 0, 1)]);

    let outbox = Outbox::default();
    let parked = eventually(WAIT, || async {
        let p = outbox.parked(&pool, 10).await.unwrap();
        (p.len() == 2).then_some(p)
    })
    .await
    .expect("both stray rows parked");
    for (row, seq) in parked.iter().zip([1, 2]) {
        assert_eq!(
            (row.event.as_str(), row.stream.as_str(), row.seq),
            ("stray", "/nowhere#lost", seq)
        );
        assert_eq!(row.attempts, 3);
        assert!(
            row.error.contains("event `stray`") && row.error.contains("no namespace `/nowhere`"),
            "{}",
            row.error
        );
    }
    assert_eq!(outbox.pending(&pool).await.unwrap(), 0);
    assert_eq!(relay.stats().parked, 2);
    // A parked row goes back in line on request, and parks again here.
    assert!(outbox.retry_parked(&pool, parked[0].id).await.unwrap());
    assert!(!outbox.retry_parked(&pool, parked[0].id).await.unwrap());
    relay.shutdown().await;
}

#[tokio::test]
async fn a_row_that_does_not_read_back_is_parked_with_its_error() {
    init_tracing();
    let Some((_db, pool)) =
        database("a_row_that_does_not_read_back_is_parked_with_its_error").await
    else {
        return;
    };
    let (http, io) = local_server().await;
    let b = Broadcaster::socketio(io);
    let mut c = client(http.addr, &["r1"]).await;
    // Rows as a bad migration or a hand edit could leave them.
    for (stream, seq, delivery) in [
        ("/#r1", 1, "not json"),
        (
            "/#r1",
            2,
            r#"{"event":"numbered","targets":[["nope",["r1"]]],"payload":{}}"#,
        ),
    ] {
        sqlx::query("INSERT INTO broadcast_outbox (stream, seq, event, delivery) VALUES ($1, $2, 'numbered', $3)")
            .bind(stream)
            .bind(seq)
            .bind(delivery)
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query("INSERT INTO broadcast_outbox_streams VALUES ('/#r1', 2)")
        .execute(&pool)
        .await
        .unwrap();
    let relay = Relay::builder(pool.clone(), b.clone())
        .poll_interval(Duration::from_millis(50))
        .spawn();
    let mut tx = pool.begin().await.unwrap();
    b.broadcast(Numbered::new("r1", 0, 3))
        .after_commit(&mut tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // The good row behind the bad ones is delivered.
    let got = collect_numbered(&mut c, 1, QUIET).await;
    assert_eq!(got, [("r1".to_string(), 0, 3)]);
    let parked = Outbox::default().parked(&pool, 10).await.unwrap();
    assert_eq!(parked.len(), 2, "{parked:?}");
    assert!(
        parked[0].error.starts_with("event `numbered`: row ")
            && parked[0].error.contains("not valid"),
        "{}",
        parked[0].error
    );
    assert!(
        parked[1].error.contains("invalid target"),
        "{}",
        parked[1].error
    );
    assert_eq!(
        parked[0].attempts, 1,
        "parked at once: retrying cannot help"
    );
    relay.shutdown().await;
}

#[tokio::test]
async fn two_relays_at_once_deliver_every_row_once_in_commit_order() {
    init_tracing();
    let Some((_db, pool)) =
        database("two_relays_at_once_deliver_every_row_once_in_commit_order").await
    else {
        return;
    };
    let (http, io) = local_server().await;
    // Two broadcasters, each with its own transport and so its own recent
    // ids: only the relays' locks can keep them from sending a row twice.
    let relays: Vec<_> = (0..2)
        .map(|_| {
            let b = Broadcaster::socketio(io.clone());
            Relay::builder(pool.clone(), b)
                .poll_interval(Duration::from_millis(20))
                .batch(16)
                .spawn()
        })
        .collect();
    let rooms = ["a", "b", "c", "d"];
    let mut c = client(http.addr, &rooms).await;
    let writer = Broadcaster::socketio(io.clone());
    let per_writer = 200u64;
    let writers: Vec<_> = (0..4u32)
        .map(|w| {
            let pool = pool.clone();
            let b = writer.clone();
            tokio::spawn(async move {
                for n in 0..per_writer {
                    let mut tx = pool.begin().await.unwrap();
                    let room = rooms[(n as usize + w as usize) % rooms.len()];
                    b.broadcast(Numbered::new(room, w, n))
                        .after_commit(&mut tx)
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let total = 4 * per_writer as usize;
    let got = collect_numbered(&mut c, total, QUIET).await;
    assert_eq!(got.len(), total, "every row once");
    let order = committed_order(&pool).await;
    for room in rooms {
        let received: Vec<(u32, u64)> = got
            .iter()
            .filter(|(r, _, _)| r == room)
            .map(|(_, w, n)| (*w, *n))
            .collect();
        assert_eq!(received, order[room], "room {room}: commit order");
    }
    let delivered: u64 = relays.iter().map(|r| r.stats().delivered).sum();
    assert_eq!(delivered, total as u64);
    for r in relays {
        r.shutdown().await;
    }
}

/// Delivered rows are kept for the retention (an hour by default) and
/// deleted once it is over; a zero retention deletes them as they go out.
#[tokio::test]
async fn delivered_rows_are_kept_for_the_retention_then_pruned() {
    init_tracing();
    let Some((_db, pool)) = database("delivered_rows_are_kept_for_the_retention_then_pruned").await
    else {
        return;
    };
    let table = Outbox::default().table().to_owned();
    let rows = |pool: sqlx::PgPool| {
        let table = table.clone();
        async move {
            let n: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            n
        }
    };
    for (retention, kept) in [(Duration::from_secs(3600), 1), (Duration::ZERO, 0)] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
            .execute(&pool)
            .await
            .ok();
        let (http, io) = local_server().await;
        let b = Broadcaster::socketio(io);
        let relay = Relay::builder(pool.clone(), b.clone())
            .poll_interval(Duration::from_millis(100))
            .retention(retention)
            .spawn();
        let mut c = client(http.addr, &["r1"]).await;
        let mut tx = pool.begin().await.unwrap();
        b.broadcast(Numbered::new("r1", 0, 1))
            .after_commit(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(collect_numbered(&mut c, 1, QUIET).await.len(), 1);
        assert_eq!(Outbox::default().pending(&pool).await.unwrap(), 0);
        assert_eq!(rows(pool.clone()).await, kept, "retention {retention:?}");
        relay.shutdown().await;
    }
}
