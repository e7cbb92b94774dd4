//! The join protocol's side of per-room subscriptions: before a socket is
//! put in a room, its server must be receiving that room's broadcasts from
//! the other processes. The Redis layer registers a [`RoomSubscriber`] per
//! Socket.IO server (its room channels); without one, joins do not wait.

use std::sync::{PoisonError, RwLock, Weak};

use socketioxide_core::Uid;

use crate::util::BoxFuture;

/// Makes one server receive a room's broadcasts from other processes.
pub(crate) trait RoomSubscriber: Send + Sync + 'static {
    /// Returns once this server receives the broadcasts of `room` in
    /// `namespace` from other processes, or once that failed (logged and
    /// retried in the background: the join still goes ahead, as a broadcast
    /// still reaches local sockets while Redis is down).
    fn subscribe<'a>(&'a self, namespace: &'a str, room: &'a str) -> BoxFuture<'a, ()>;
}

type Subscribers = RwLock<Vec<(Uid, Weak<dyn RoomSubscriber>)>>;

static SUBSCRIBERS: Subscribers = RwLock::new(Vec::new());

/// Makes `subscriber` the room subscriber of the server `server`; it stays
/// registered while someone holds it.
#[cfg(feature = "redis")]
pub(crate) fn register(server: Uid, subscriber: &std::sync::Arc<dyn RoomSubscriber>) {
    let mut all = SUBSCRIBERS.write().unwrap_or_else(PoisonError::into_inner);
    all.retain(|(id, s)| *id != server && s.strong_count() > 0);
    all.push((server, std::sync::Arc::downgrade(subscriber)));
}

/// Waits until server `server` receives `room`'s broadcasts; at once when
/// it has no subscriber (in-memory servers, or namespace channels only).
pub(crate) async fn subscribe(server: Uid, namespace: &str, room: &str) {
    let found = SUBSCRIBERS
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .find(|(id, _)| *id == server)
        .and_then(|(_, s)| s.upgrade());
    if let Some(subscriber) = found {
        subscriber.subscribe(namespace, room).await;
    }
}
