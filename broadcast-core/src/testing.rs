//! Test doubles: a transport that records deliveries, and assertions over
//! them (in the spirit of Laravel's `Event::fake()` and Phoenix's
//! `assert_broadcast`).
//!
//! ```
//! use broadcast_core::{BroadcastEvent, testing::FakeBroadcaster};
//! use serde_json::json;
//!
//! #[derive(serde::Serialize, BroadcastEvent)]
//! #[broadcast(on = "chat|{chat_id}")]
//! struct MessagePosted { chat_id: u64, text: String }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let fake = FakeBroadcaster::new();
//! fake.broadcaster()
//!     .broadcast(MessagePosted { chat_id: 1, text: "hi".into() })
//!     .await
//!     .unwrap();
//!
//! fake.assert_broadcast::<MessagePosted>()
//!     .to_room("chat|1")
//!     .with_payload(json!({"chat_id": 1, "text": "hi"}));
//! fake.assert_broadcast_times::<MessagePosted>(1);
//! # }
//! ```
//!
//! The assertion helpers panic with a description of what was recorded, as
//! test assertions do.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::Value;
use socketioxide::socket::Sid;

use crate::broadcaster::Broadcaster;
use crate::event::BroadcastEvent;
use crate::target::Targets;
use crate::transport::{BoxFuture, Delivery, DeliveryReport, NamespaceFailure, Transport};

/// One delivery the fake saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// Event name.
    pub event: &'static str,
    /// Targets, grouped by namespace.
    pub targets: Targets,
    /// Excluded sockets.
    pub except_sockets: Vec<Sid>,
    /// Excluded rooms.
    pub except_rooms: Vec<Cow<'static, str>>,
    /// The payload as clients would parse it.
    pub payload: Value,
    /// The payload's JSON text, byte for byte as sent.
    pub raw: String,
}

impl Recorded {
    /// Asserts the event went to `room` (in any namespace).
    #[track_caller]
    pub fn to_room(&self, room: &str) -> &Self {
        assert!(
            self.targets
                .namespaces()
                .any(|g| g.rooms.iter().any(|r| r == room)),
            "`{}` was not broadcast to room `{room}`; targets: {:?}",
            self.event,
            self.targets.room_names()
        );
        self
    }

    /// Asserts the event went to `room` in `namespace`.
    #[track_caller]
    pub fn to_room_in(&self, namespace: &str, room: &str) -> &Self {
        assert!(
            self.targets.contains(namespace, room),
            "`{}` was not broadcast to `{namespace}#{room}`; targets: {:?}",
            self.event,
            self.targets
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
        );
        self
    }

    /// Asserts the exact set of rooms (any namespace, any order).
    #[track_caller]
    pub fn to_rooms(&self, rooms: &[&str]) -> &Self {
        let mut got = self.targets.room_names();
        got.sort();
        let mut want: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "`{}` went to other rooms", self.event);
        self
    }

    /// Asserts the payload equals `expected`.
    #[track_caller]
    pub fn with_payload(&self, expected: Value) -> &Self {
        assert_eq!(self.payload, expected, "`{}` payload differs", self.event);
        self
    }

    /// Asserts the payload contains `expected` (objects compared key by key,
    /// recursively; other values exactly).
    #[track_caller]
    pub fn with_payload_containing(&self, expected: Value) -> &Self {
        assert!(
            contains(&self.payload, &expected),
            "`{}` payload {} does not contain {}",
            self.event,
            self.payload,
            expected
        );
        self
    }

    /// Asserts the delivery excluded `room`.
    #[track_caller]
    pub fn excluding_room(&self, room: &str) -> &Self {
        assert!(
            self.except_rooms.iter().any(|r| r == room),
            "`{}` did not exclude room `{room}`; excluded: {:?}",
            self.event,
            self.except_rooms
        );
        self
    }

    /// Asserts the delivery excluded socket `sid`.
    #[track_caller]
    pub fn excluding_socket(&self, sid: Sid) -> &Self {
        assert!(
            self.except_sockets.contains(&sid),
            "`{}` did not exclude socket `{sid}`; excluded: {:?}",
            self.event,
            self.except_sockets
        );
        self
    }
}

fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| contains(av, v))),
        _ => actual == expected,
    }
}

/// A [`Transport`] that records every delivery instead of sending it.
#[derive(Clone, Default)]
struct FakeTransport {
    log: Arc<Mutex<Vec<Recorded>>>,
}

impl FakeTransport {
    fn log(&self) -> MutexGuard<'_, Vec<Recorded>> {
        // A test that panicked while holding the lock leaves plain data behind.
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn recorded(&self) -> Vec<Recorded> {
        self.log().clone()
    }

    fn clear(&self) {
        self.log().clear();
    }
}

impl Transport for FakeTransport {
    fn deliver<'a>(
        &'a self,
        d: Delivery<'a>,
    ) -> BoxFuture<'a, Result<DeliveryReport, NamespaceFailure>> {
        // The payload came from serde_json, so it always parses back.
        let payload = serde_json::from_str(d.payload.get()).unwrap_or(Value::Null);
        self.log().push(Recorded {
            event: d.event,
            targets: d.targets.clone(),
            except_sockets: d.except_sockets.to_vec(),
            except_rooms: d.except_rooms.to_vec(),
            payload,
            raw: d.payload.get().to_string(),
        });
        let namespaces = d.targets.namespaces().count();
        Box::pin(std::future::ready(Ok(DeliveryReport {
            namespaces,
            ..Default::default()
        })))
    }
}

/// A broadcaster that records every delivery instead of sending it, with
/// assertions over what it recorded.
#[derive(Clone)]
pub struct FakeBroadcaster {
    transport: FakeTransport,
    broadcaster: Broadcaster,
}

impl Default for FakeBroadcaster {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeBroadcaster {
    /// A fresh fake with the default limits.
    pub fn new() -> Self {
        Self::with_max_payload_bytes(crate::broadcaster::DEFAULT_MAX_PAYLOAD_BYTES)
    }

    /// A fresh fake whose broadcaster refuses payloads over `limit` bytes,
    /// to test what your code does with
    /// [`BroadcastError::PayloadTooLarge`](crate::BroadcastError::PayloadTooLarge).
    ///
    /// ```
    /// let fake = broadcast_core::testing::FakeBroadcaster::with_max_payload_bytes(16);
    /// # drop(fake);
    /// ```
    pub fn with_max_payload_bytes(limit: usize) -> Self {
        let transport = FakeTransport::default();
        Self {
            broadcaster: Broadcaster::builder(transport.clone())
                .max_payload_bytes(limit)
                .build(),
            transport,
        }
    }

    /// The broadcaster to use (or to pass to [`with_broadcaster`](crate::with_broadcaster)).
    pub fn broadcaster(&self) -> Broadcaster {
        self.broadcaster.clone()
    }

    /// Everything recorded so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.transport.recorded()
    }

    /// Recorded deliveries of event `E`.
    pub fn broadcasts_of<E: BroadcastEvent>(&self) -> Vec<Recorded> {
        self.recorded()
            .into_iter()
            .filter(|r| r.event == E::NAME)
            .collect()
    }

    /// Asserts `E` was broadcast; returns its last delivery for more checks.
    #[track_caller]
    pub fn assert_broadcast<E: BroadcastEvent>(&self) -> Recorded {
        let all = self.recorded();
        match all.iter().rev().find(|r| r.event == E::NAME) {
            Some(r) => r.clone(),
            None => panic!(
                "expected `{}` to be broadcast; recorded: {:?}",
                E::NAME,
                all.iter().map(|r| r.event).collect::<Vec<_>>()
            ),
        }
    }

    /// Asserts some delivery of `E` satisfies `pred`.
    #[track_caller]
    pub fn assert_broadcast_where<E: BroadcastEvent>(
        &self,
        pred: impl Fn(&Recorded) -> bool,
    ) -> Recorded {
        let of = self.broadcasts_of::<E>();
        match of.iter().find(|r| pred(r)) {
            Some(r) => r.clone(),
            None => panic!(
                "no `{}` broadcast matched; recorded ones: {:#?}",
                E::NAME,
                of
            ),
        }
    }

    /// Asserts `E` was broadcast exactly `n` times.
    #[track_caller]
    pub fn assert_broadcast_times<E: BroadcastEvent>(&self, n: usize) {
        let got = self.broadcasts_of::<E>().len();
        assert_eq!(got, n, "`{}` was broadcast {got} times, not {n}", E::NAME);
    }

    /// Asserts `E` was never broadcast.
    #[track_caller]
    pub fn assert_not_broadcast<E: BroadcastEvent>(&self) {
        self.assert_broadcast_times::<E>(0);
    }

    /// Asserts nothing at all was broadcast.
    #[track_caller]
    pub fn assert_nothing_broadcast(&self) {
        let all = self.recorded();
        assert!(
            all.is_empty(),
            "expected no broadcast; recorded: {:?}",
            all.iter().map(|r| r.event).collect::<Vec<_>>()
        );
    }

    /// Forgets everything recorded.
    pub fn clear(&self) {
        self.transport.clear();
    }
}
