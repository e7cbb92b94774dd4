//! In-process delivery through a socketioxide server.

use std::borrow::Cow;

use socketioxide::adapter::Adapter;
use socketioxide::{BroadcastError as SioBroadcastError, SocketIo};

use super::{BoxFuture, Delivery, DeliveryReport, NamespaceFailure, Transport};
use crate::error::TransportError;

/// Delivers through a [`SocketIo`] handle, with whatever adapter it runs
/// (in-memory, or Redis to reach sockets of other servers).
///
/// ```no_run
/// use broadcast_core::{Broadcaster, transport::SocketIoTransport};
/// let (_layer, io) = socketioxide::SocketIo::new_layer();
/// let broadcaster = Broadcaster::new(SocketIoTransport::new(io));
/// ```
pub struct SocketIoTransport<A: Adapter> {
    io: SocketIo<A>,
}

impl<A: Adapter> SocketIoTransport<A> {
    /// Wraps a socketioxide handle.
    pub fn new(io: SocketIo<A>) -> Self {
        Self { io }
    }
}

impl<A: Adapter> Transport for SocketIoTransport<A> {
    fn deliver<'a>(
        &'a self,
        d: Delivery<'a>,
    ) -> BoxFuture<'a, Result<DeliveryReport, NamespaceFailure>> {
        Box::pin(async move {
            let mut report = DeliveryReport::default();
            let mut first_failure = None;
            for group in d.targets.namespaces() {
                let result = match self.io.of(&*group.namespace) {
                    None => Err(TransportError::UnknownNamespace(
                        group.namespace.to_string(),
                    )),
                    Some(op) => {
                        // socketioxide excludes a sender through the socket's own
                        // broadcast operator (the id travels to other nodes with
                        // the adapter's options); a socket is not a room there.
                        // Sockets not connected here are excluded by their id
                        // room, which the rooms middleware (`join::Rooms`) makes every socket join.
                        let mut sockets = d.except_sockets.iter();
                        let op = match sockets.next().and_then(|sid| op.get_socket(*sid)) {
                            Some(sender) => sender.broadcast(),
                            None => op,
                        };
                        let rooms: Vec<Cow<'static, str>> = group.rooms.clone();
                        let mut op = op.to(rooms);
                        let mut except: Vec<Cow<'static, str>> = d.except_rooms.to_vec();
                        except.extend(d.except_sockets.iter().map(|s| Cow::Owned(s.to_string())));
                        if !except.is_empty() {
                            op = op.except(except);
                        }
                        // `&RawValue` serializes as its bytes: no second JSON pass.
                        op.emit(d.event, d.payload).await
                    }
                    .or_else(|e| classify(e, &mut report)),
                };
                match result {
                    Ok(()) => report.namespaces += 1,
                    Err(error) => {
                        if first_failure.is_none() {
                            first_failure = Some(NamespaceFailure {
                                target: group.clone(),
                                error,
                            });
                        }
                    }
                }
            }
            match first_failure {
                Some(f) => Err(f),
                None => Ok(report),
            }
        })
    }
}

/// Sorts socketioxide's error: per-socket write failures are counted (a
/// socket closing mid-broadcast is normal), everything else is a failure.
pub(crate) fn classify(
    e: SioBroadcastError,
    report: &mut DeliveryReport,
) -> Result<(), TransportError> {
    match e {
        SioBroadcastError::Socket(errors) => {
            tracing::debug!(count = errors.len(), "some sockets could not be written to");
            report.socket_errors += errors.len();
            Ok(())
        }
        SioBroadcastError::Serialize(e) => Err(TransportError::Encode(Box::new(e))),
        // socketioxide's adapter errors are not `Sync`; keep their message.
        SioBroadcastError::Adapter(e) => Err(TransportError::Adapter(e.to_string().into())),
    }
}
