//! The transport of a broadcaster with history rooms: their share of each
//! event goes to the history store, the rest to the usual transport.

use std::any::Any;
use std::borrow::Cow;
use std::sync::Arc;

use socketioxide::adapter::Adapter;

use super::{Append, Feed, HistoryRooms, Store};
use crate::target::{NamespaceTargets, Targets};
use crate::transport::{
    BoxFuture, Delivery, DeliveryReport, NamespaceFailure, RemoteReceivers, Transport,
};

/// Splits each delivery: history rooms are appended to their streams (one
/// copy per room, with its position), other rooms go to `inner`, skipping
/// the sockets of the event's history rooms so that none gets two copies.
pub(crate) struct HistoryTransport<T> {
    inner: T,
    rooms: Arc<HistoryRooms>,
    store: Arc<dyn Store>,
    /// Keeps the server's feed (its join service) alive with the broadcaster.
    _feed: Option<Arc<dyn Any + Send + Sync>>,
}

impl<T: Transport> HistoryTransport<T> {
    pub(crate) fn new<A: Adapter>(
        inner: T,
        rooms: Arc<HistoryRooms>,
        store: Arc<dyn Store>,
        feed: Option<Arc<Feed<A>>>,
    ) -> Self {
        let feed = feed.map(|f| f as Arc<dyn Any + Send + Sync>);
        Self {
            inner,
            rooms,
            store,
            _feed: feed,
        }
    }
}

impl<T: Transport> Transport for HistoryTransport<T> {
    fn deliver<'a>(
        &'a self,
        d: Delivery<'a>,
    ) -> BoxFuture<'a, Result<DeliveryReport, NamespaceFailure>> {
        let any = d
            .targets
            .iter()
            .any(|t| self.rooms.policy(&t.namespace, &t.room).is_some());
        if !any {
            return self.inner.deliver(d);
        }
        Box::pin(async move {
            let mut report = DeliveryReport::default();
            // Without an id nothing is a duplicate; with one, the delivery
            // is one when every part of it was.
            let mut all_duplicates = d.id.is_some();
            for group in d.targets.namespaces() {
                // Each room's policy is looked up once, here.
                let mut kept = Vec::new();
                let mut plain = Vec::new();
                for room in &group.rooms {
                    match self.rooms.policy(&group.namespace, room) {
                        Some(policy) => kept.push((room, policy)),
                        None => plain.push(room),
                    }
                }
                if !plain.is_empty() {
                    let mut targets = Targets::new();
                    for room in &plain {
                        targets.push(group.namespace.clone(), (*room).clone());
                    }
                    let mut except: Vec<Cow<'static, str>> = d.except_rooms.to_vec();
                    except.extend(kept.iter().map(|(r, _)| (*r).clone()));
                    let part = Delivery {
                        event: d.event,
                        targets: &targets,
                        except_sockets: d.except_sockets,
                        except_rooms: &except,
                        payload: d.payload,
                        id: d.id,
                    };
                    let r = self.inner.deliver(part).await?;
                    all_duplicates &= r.duplicate;
                    report.namespaces += r.namespaces;
                    report.socket_errors += r.socket_errors;
                    report.remote.extend(r.remote);
                }
                let mut receivers = None;
                for (room, policy) in kept {
                    let append = Append {
                        namespace: &group.namespace,
                        room,
                        policy,
                        event: d.event,
                        payload: d.payload,
                        except: d.except_sockets,
                        id: d.id,
                    };
                    match self.store.append(append).await {
                        Ok(Some(n)) => {
                            all_duplicates = false;
                            receivers = Some(receivers.unwrap_or(u64::MAX).min(n));
                        }
                        Ok(None) => {}
                        Err(error) => {
                            return Err(NamespaceFailure {
                                target: NamespaceTargets {
                                    namespace: group.namespace.clone(),
                                    rooms: vec![room.clone()],
                                },
                                error,
                            });
                        }
                    }
                }
                if let Some(receivers) = receivers {
                    report.namespaces += usize::from(plain.is_empty());
                    report.remote.push(RemoteReceivers {
                        namespace: group.namespace.clone(),
                        receivers,
                    });
                }
            }
            report.duplicate = all_duplicates;
            Ok(report)
        })
    }
}
