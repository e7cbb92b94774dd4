//! A broadcast that is never awaited sends nothing; it must say so rather
//! than fail silently.

use std::io::Write;
use std::sync::{Arc, Mutex};

use broadcast_core::testing::FakeBroadcaster;
use broadcast_core::{BroadcastEvent, broadcast, with_broadcaster};

#[derive(serde::Serialize, BroadcastEvent)]
#[broadcast(on = "lobby")]
struct Ping;

/// Collects what the fmt subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn a_dropped_broadcast_is_logged_and_sends_nothing() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let fake = FakeBroadcaster::new();
    with_broadcaster(fake.broadcaster(), async {
        #[allow(clippy::let_underscore_future)] // the mistake under test
        let _ = broadcast(Ping);
    })
    .await;
    fake.assert_nothing_broadcast();
    let log = captured.text();
    assert!(
        log.contains("dropped without being awaited") && log.contains("ping"),
        "{log}"
    );

    // Awaited, it is sent and nothing of the kind is logged.
    let before = captured.text().len();
    with_broadcaster(fake.broadcaster(), async {
        broadcast(Ping).await.unwrap();
    })
    .await;
    fake.assert_broadcast_times::<Ping>(1);
    assert!(!captured.text()[before..].contains("dropped without being awaited"));
}
