//! Queued broadcasting: `broadcast(e).queue()` into the broadcaster's
//! bounded in-process queue, `flush`, a full queue, and a graceful shutdown
//! on SIGTERM of a real server process (`examples/queue_shutdown`) with a
//! real Socket.IO client.

mod chat_common;
mod outbox_common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use broadcast_core::transport::{
    BoxFuture, Delivery, DeliveryReport, NamespaceFailure, SocketIoTransport, Transport,
};
use broadcast_core::{Broadcaster, QueueError, Queued};
use broadcast_test_support::env::TempDir;
use broadcast_test_support::ports::free_port;
use broadcast_test_support::sio_client::{ClientError, SioClient};
use chat_common::{Proc, example_bin};
use outbox_common::*;
use serde_json::json;

#[tokio::test]
async fn queued_events_are_delivered_in_order_and_flush_waits_for_them() {
    init_tracing();
    let (http, io) = local_server().await;
    let b = Broadcaster::builder(SocketIoTransport::new(io))
        .queue_capacity(20_000)
        .build();
    let mut c = client(http.addr, &["q"]).await;
    for n in 0..10_000 {
        assert_eq!(
            b.broadcast(Numbered::new("q", 0, n)).queue().await.unwrap(),
            Queued::Accepted
        );
    }
    let report = b.flush(WAIT).await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.delivered, 10_000);
    let got = collect_numbered(&mut c, 10_000, QUIET).await;
    let want: Vec<_> = (0..10_000).map(|n| ("q".to_string(), 0, n)).collect();
    assert_eq!(got, want);
    // A pipeline error is the caller's, at once.
    let err = b
        .broadcast(Numbered::new("", 0, 0))
        .queue()
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::Broadcast(_)), "{err}");
    assert_eq!(err.event(), "numbered");
}

/// A transport that waits for a gate before every delivery.
struct Gated(Arc<tokio::sync::Semaphore>);

impl Transport for Gated {
    fn deliver<'a>(
        &'a self,
        _d: Delivery<'a>,
    ) -> BoxFuture<'a, Result<DeliveryReport, NamespaceFailure>> {
        Box::pin(async move {
            let _ = self.0.acquire().await.map(|p| p.forget());
            Ok(DeliveryReport {
                namespaces: 1,
                ..Default::default()
            })
        })
    }
}

#[tokio::test]
async fn a_full_queue_says_so_and_shutdown_reports_what_was_not_sent() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let b = Broadcaster::builder(Gated(gate.clone()))
        .queue_capacity(4)
        .build();
    let mut accepted = 0;
    let err = loop {
        match b.broadcast(Numbered::new("q", 0, accepted)).queue().await {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 100, "the queue never filled");
    };
    assert_eq!(
        err.to_string(),
        "event `numbered`: the broadcast queue is full (4 events)"
    );
    // One in flight (held by the gate) plus the capacity.
    assert!((4..=5).contains(&accepted), "{accepted}");
    gate.add_permits(1_000);
    let report = b.shutdown(WAIT).await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.delivered, accepted);
    let err = b
        .broadcast(Numbered::new("q", 0, 99))
        .queue()
        .await
        .unwrap_err();
    assert!(
        matches!(err, QueueError::Closed { event: "numbered" }),
        "{err}"
    );
}

#[tokio::test]
async fn shutdown_reports_by_name_what_it_could_not_send() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let b = Broadcaster::builder(Gated(gate.clone()))
        .queue_capacity(100)
        .build();
    for n in 0..10 {
        b.broadcast(Numbered::new("q", 0, n)).queue().await.unwrap();
    }
    gate.add_permits(3);
    let shutdown = tokio::spawn({
        let b = b.clone();
        async move { b.shutdown(Duration::from_millis(300)).await }
    });
    // Past the deadline, the delivery in flight is let through.
    tokio::time::sleep(Duration::from_millis(500)).await;
    gate.add_permits(1);
    let report = shutdown.await.unwrap();
    assert_eq!(report.delivered, 4, "{report:?}");
    assert_eq!(report.undelivered_count, 6, "{report:?}");
    assert_eq!(report.undelivered, ["numbered"; 6]);
    assert!(!report.is_complete());
}

/// The example server, a client in room `burst`, a burst of `count` queued
/// events, then SIGTERM: what the client got plus what the server reported
/// as undelivered is the burst, in order.
async fn burst_then_sigterm(count: u64, shutdown_ms: u64) -> (usize, serde_json::Value) {
    let bin = example_bin("queue_shutdown");
    let dir = TempDir::new("queue-shutdown").expect("temp dir");
    let out = dir.path().join("out");
    let port = free_port().expect("a free port");
    let file = std::fs::File::create(&out).unwrap();
    let mut proc = Proc::new(
        Command::new(bin)
            .env("PORT", port.to_string())
            .env("SHUTDOWN_MS", shutdown_ms.to_string())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawning queue_shutdown"),
        false,
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut c = eventually(WAIT, || async {
        SioClient::connect(addr, "/", None).await.ok()
    })
    .await
    .expect("the example accepts a client");
    let ack = c
        .emit_with_ack("/", "burst", vec![json!(count)], WAIT)
        .await
        .unwrap();
    assert_eq!(ack[0]["queued"], count, "{ack:?}");
    Command::new("kill")
        .args(["-TERM", &proc.id().to_string()])
        .status()
        .unwrap();
    // Everything until the server closes the connection.
    let mut got = Vec::new();
    loop {
        match c.next_event(WAIT).await {
            Ok(ev) if ev.event == "burst_item" => got.push(ev.args[0]["n"].as_u64().unwrap()),
            Ok(_) => {}
            Err(ClientError::Timeout) => panic!("the server neither sent nor closed"),
            Err(_) => break,
        }
    }
    let status = proc.wait_exit(WAIT).await;
    assert!(status.is_some_and(|s| s.success()), "exit: {status:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    let report: serde_json::Value = text
        .lines()
        .find_map(|l| {
            serde_json::from_str(l)
                .ok()
                .filter(|v: &serde_json::Value| v.get("undelivered").is_some())
        })
        .unwrap_or_else(|| panic!("no report in:\n{text}"));
    let want: Vec<u64> = (0..got.len() as u64).collect();
    assert_eq!(got, want, "in order, none twice");
    (got.len(), report)
}

#[tokio::test]
async fn sigterm_delivers_10000_queued_events_before_exit() {
    let (received, report) = burst_then_sigterm(10_000, 10_000).await;
    eprintln!("received {received}, report {report}");
    assert_eq!(report["undelivered"], 0, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["socket_errors"], 0, "{report}");
    assert_eq!(received, 10_000);
}

#[tokio::test]
async fn sigterm_with_no_time_reports_what_was_not_sent() {
    let (received, report) = burst_then_sigterm(10_000, 0).await;
    eprintln!("received {received}, report {report}");
    let undelivered = report["undelivered"].as_u64().unwrap() as usize;
    assert_eq!(report["socket_errors"], 0, "{report}");
    assert_eq!(received + undelivered, 10_000, "{report}");
}
