//! Transports: how a serialized event reaches sockets.
//!
//! The [`Broadcaster`](crate::Broadcaster) runs the event pipeline once and
//! hands the result, a [`Delivery`], to one transport:
//! [`SocketIoTransport`] (in-process, through any socketioxide adapter),
//! the Redis publisher for processes without a server (feature `redis`), or
//! [`FakeBroadcaster`](crate::testing::FakeBroadcaster)'s recorder in tests.

use serde_json::value::RawValue;

use crate::error::TransportError;
use crate::target::{NamespaceTargets, Targets};
pub use crate::util::BoxFuture;

mod compact;
mod dedup;
mod socketio;
pub use compact::{CompactRequest, CompactRequestLayer};
pub use dedup::RecentIds;
pub use socketio::SocketIoTransport;
pub(crate) use socketio::classify;
#[cfg(feature = "redis")]
pub(crate) use socketio::emit_group;

/// One event, ready to deliver: its name, its targets, the rooms to skip and
/// the payload serialized once.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The Socket.IO event name.
    pub event: &'static str,
    /// Where to deliver, grouped by namespace.
    pub targets: &'a Targets,
    /// Sockets that must not receive it (the sender, for "to others").
    pub except_sockets: &'a [socketioxide::socket::Sid],
    /// Rooms whose sockets must not receive it.
    pub except_rooms: &'a [std::borrow::Cow<'static, str>],
    /// The JSON payload.
    pub payload: &'a RawValue,
    /// An idempotency key (an outbox row's event id), or `None` for a
    /// plain broadcast. Transports that see one deliver the event at most
    /// once per id, so that a relay re-delivering a row after a crash sends
    /// nothing twice: the in-process transport remembers recent ids
    /// ([`RecentIds`]); the Redis transports check and publish in one
    /// atomic script. A duplicate is reported as delivered to nobody
    /// ([`DeliveryReport::duplicate`]).
    pub id: Option<&'a str>,
}

/// A namespace's delivery failed.
#[derive(Debug)]
pub struct NamespaceFailure {
    /// The namespace whose delivery failed, with its rooms.
    pub target: NamespaceTargets,
    /// What went wrong.
    pub error: TransportError,
}

/// What a transport reports after a delivery.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Namespaces emitted to.
    pub namespaces: usize,
    /// Local sockets that could not be written to (closed or full); they are
    /// logged, not treated as a failure of the broadcast.
    pub socket_errors: usize,
    /// For transports that publish to other processes (Redis), how many
    /// received each namespace's publish; empty for in-process delivery.
    pub remote: Vec<RemoteReceivers>,
    /// The delivery's [`id`](Delivery::id) was seen before: nothing was
    /// sent this time.
    pub duplicate: bool,
}

/// How many other processes received one namespace's publish.
///
/// With Redis this is SPUBLISH's count of subscribers, less the publishing
/// server's own subscription: the other servers (for a worker: all the
/// servers) that were subscribed to the namespace when Redis handled the
/// publish. 0 with a single server is normal; with several, it means they
/// missed the event (e.g. they were still re-subscribing after a Redis
/// restart).
///
/// ```
/// use broadcast_core::transport::RemoteReceivers;
/// let r = RemoteReceivers { namespace: "/".into(), receivers: 2 };
/// assert_eq!(r.receivers, 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteReceivers {
    /// The namespace published to.
    pub namespace: std::borrow::Cow<'static, str>,
    /// Other processes subscribed to it when Redis handled the publish.
    pub receivers: u64,
}

/// Collects a delivery over several namespaces: the namespaces that went
/// out, and the first failure, which is what the broadcast reports (the
/// others are logged by whoever saw them).
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) report: DeliveryReport,
    first_failure: Option<NamespaceFailure>,
}

impl Tally {
    pub(crate) fn delivered(&mut self) {
        self.report.namespaces += 1;
    }

    /// A namespace published to other processes, `receivers` of which got it.
    #[cfg(feature = "redis")]
    pub(crate) fn published(&mut self, target: &NamespaceTargets, receivers: u64) {
        self.delivered();
        self.report.remote.push(RemoteReceivers {
            namespace: target.namespace.clone(),
            receivers,
        });
    }

    pub(crate) fn failed(&mut self, target: &NamespaceTargets, error: TransportError) {
        if self.first_failure.is_none() {
            self.first_failure = Some(NamespaceFailure {
                target: target.clone(),
                error,
            });
        }
    }

    pub(crate) fn finish(self) -> Result<DeliveryReport, NamespaceFailure> {
        match self.first_failure {
            Some(failure) => Err(failure),
            None => Ok(self.report),
        }
    }
}

/// A way to deliver events. Object-safe, so one broadcaster can hold any.
///
/// ```
/// use broadcast_core::transport::{BoxFuture, Delivery, DeliveryReport, NamespaceFailure, Transport};
///
/// /// Prints every delivery instead of sending it.
/// struct Stdout;
///
/// impl Transport for Stdout {
///     fn deliver<'a>(
///         &'a self,
///         d: Delivery<'a>,
///     ) -> BoxFuture<'a, Result<DeliveryReport, NamespaceFailure>> {
///         Box::pin(async move {
///             println!("{} -> {:?}: {}", d.event, d.targets.room_names(), d.payload);
///             Ok(DeliveryReport { namespaces: d.targets.namespaces().count(), ..Default::default() })
///         })
///     }
/// }
/// ```
pub trait Transport: Send + Sync + 'static {
    /// Delivers one event to every namespace of its targets, each with a
    /// single emit. On failure, reports the first namespace that failed
    /// (after attempting all of them).
    fn deliver<'a>(
        &'a self,
        delivery: Delivery<'a>,
    ) -> BoxFuture<'a, Result<DeliveryReport, NamespaceFailure>>;

    /// Delivers several events in order, as [`deliver`](Self::deliver)
    /// one after the other would, stopping at the first failure (then the
    /// last result is that failure, and the later events were not tried).
    /// An outbox relay hands each stream's rows to it; a transport that can
    /// send a run of them in one round trip, in order, overrides it (the
    /// Redis worker's does, for deliveries with an id).
    fn deliver_all<'a>(
        &'a self,
        deliveries: Vec<Delivery<'a>>,
    ) -> BoxFuture<'a, Vec<Result<DeliveryReport, NamespaceFailure>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(deliveries.len());
            for d in deliveries {
                let result = self.deliver(d).await;
                let failed = result.is_err();
                out.push(result);
                if failed {
                    break;
                }
            }
            out
        })
    }
}
