//! A prepared delivery: the result of an event's pipeline (`when`,
//! targets, payload, the one serialization, the size limit), kept so that it
//! can be delivered later: from an in-process queue, or stored in a
//! database outbox and delivered by a relay in another process.
//!
//! Its stored form is JSON ([`PreparedDelivery::to_json`]); reading one back
//! ([`PreparedDelivery::from_json`]) checks everything again (event name,
//! namespaces, rooms, socket ids), because a database row is input like any
//! other.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use broadcast_rules::{NameError, validate_event_name, validate_room};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use socketioxide::socket::Sid;

use crate::event::EventDescriptor;
use crate::target::Targets;
use crate::transport::Delivery;

/// Distinct event names read back from storage that are not registered
/// events of this program; past it, a row fails rather than growing memory.
const MAX_FOREIGN_NAMES: usize = 1024;

/// An event that passed its pipeline and waits to be delivered: its name,
/// targets, exclusions and serialized payload.
///
/// Made by [`Broadcast::prepare`](crate::Broadcast::prepare); delivered by
/// [`Broadcaster::deliver`](crate::Broadcaster::deliver).
///
/// ```
/// # use broadcast_core::{BroadcastEvent, testing::FakeBroadcaster};
/// # #[derive(serde::Serialize, BroadcastEvent)]
/// # #[broadcast(on = "chat|{chat_id}")]
/// # struct MessagePosted { chat_id: u64 }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use broadcast_core::{Prepared, PreparedDelivery};
/// let b = FakeBroadcaster::new().broadcaster();
/// let Prepared::Ready(p) = b.broadcast(MessagePosted { chat_id: 1 }).prepare().await.unwrap() else {
///     unreachable!()
/// };
/// let stored = p.to_json();
/// let back = PreparedDelivery::from_json(&stored).unwrap();
/// assert_eq!(back.event(), "message_posted");
/// assert_eq!(back.payload().get(), r#"{"chat_id":1}"#);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PreparedDelivery {
    pub(crate) event: &'static str,
    pub(crate) targets: Targets,
    pub(crate) except_sockets: Vec<Sid>,
    pub(crate) except_rooms: Vec<Cow<'static, str>>,
    pub(crate) payload: Box<RawValue>,
}

/// The stored shape: plain strings, checked when read back.
#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow)]
    targets: Vec<(Cow<'a, str>, Vec<Cow<'a, str>>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    except_sockets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    except_rooms: Vec<String>,
    #[serde(borrow)]
    payload: &'a RawValue,
}

/// A stored delivery that cannot be read back.
///
/// ```
/// let e = broadcast_core::PreparedDelivery::from_json("{}").unwrap_err();
/// assert!(e.to_string().starts_with("stored delivery"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreparedError {
    /// Not the JSON shape [`PreparedDelivery::to_json`] writes.
    #[error("stored delivery is not valid: {0}")]
    Decode(#[from] serde_json::Error),
    /// A name in it breaks the naming rules.
    #[error("stored delivery of event `{event}`: invalid {what} `{value}`: {source}")]
    Name {
        /// The event name as stored.
        event: String,
        /// Which name: event, namespace, room, excluded room.
        what: &'static str,
        /// The offending value, cut to a readable length.
        value: String,
        /// What is wrong with it.
        source: NameError,
    },
    /// An excluded socket id that is not a Socket.IO session id.
    #[error("stored delivery of event `{event}`: `{id}` is not a socket id")]
    SocketId {
        /// The event name as stored.
        event: String,
        /// The offending id, cut to a readable length.
        id: String,
    },
    /// It has no target.
    #[error("stored delivery of event `{event}` has no target")]
    NoTargets {
        /// The event name as stored.
        event: String,
    },
    /// Too many distinct unregistered event names were read back.
    #[error(
        "stored delivery of event `{event}`: more than {MAX_FOREIGN_NAMES} distinct unregistered event names"
    )]
    TooManyNames {
        /// The event name as stored.
        event: String,
    },
}

impl PreparedDelivery {
    /// The Socket.IO event name.
    pub fn event(&self) -> &'static str {
        self.event
    }

    /// Where it goes.
    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// The serialized payload.
    pub fn payload(&self) -> &RawValue {
        &self.payload
    }

    /// The key that orders deliveries: its first target, as
    /// `namespace#room`. An outbox delivers the events of one key in
    /// the order they were committed.
    pub fn ordering_key(&self) -> String {
        self.targets
            .iter()
            .next()
            .map(|t| t.to_string())
            .unwrap_or_default()
    }

    /// What a transport receives; `id`, when given, lets the transport
    /// deliver it at most once (see [`Delivery::id`]).
    pub fn as_delivery<'a>(&'a self, id: Option<&'a str>) -> Delivery<'a> {
        Delivery {
            event: self.event,
            targets: &self.targets,
            except_sockets: &self.except_sockets,
            except_rooms: &self.except_rooms,
            payload: &self.payload,
            id,
        }
    }

    /// The stored form: JSON whose `payload` is the serialized payload as is.
    pub fn to_json(&self) -> String {
        let stored = Stored {
            event: Cow::Borrowed(self.event),
            targets: self
                .targets
                .namespaces()
                .map(|g| {
                    (
                        Cow::Borrowed(&*g.namespace),
                        g.rooms.iter().map(|r| Cow::Borrowed(&**r)).collect(),
                    )
                })
                .collect(),
            except_sockets: self.except_sockets.iter().map(|s| s.to_string()).collect(),
            except_rooms: self.except_rooms.iter().map(|r| r.to_string()).collect(),
            payload: &self.payload,
        };
        // Strings and a raw JSON value cannot fail to serialize.
        serde_json::to_string(&stored).unwrap_or_default()
    }

    /// Reads the stored form back, checking every name in it.
    pub fn from_json(json: &str) -> Result<Self, PreparedError> {
        let stored: Stored<'_> = serde_json::from_str(json)?;
        let name = |what: &'static str, value: &str, source| PreparedError::Name {
            event: crate::util::echo(&stored.event),
            what,
            value: crate::util::echo(value),
            source,
        };
        validate_event_name(&stored.event).map_err(|e| name("event name", &stored.event, e))?;
        let mut targets = Targets::new();
        for (namespace, rooms) in &stored.targets {
            for room in rooms {
                targets.push(namespace.to_string(), room.to_string());
            }
        }
        if targets.is_empty() {
            return Err(PreparedError::NoTargets {
                event: crate::util::echo(&stored.event),
            });
        }
        targets
            .validate()
            .map_err(|(target, source)| name("target", &target.to_string(), source))?;
        let mut except_sockets = Vec::with_capacity(stored.except_sockets.len());
        for id in &stored.except_sockets {
            except_sockets.push(id.parse::<Sid>().map_err(|_| PreparedError::SocketId {
                event: crate::util::echo(&stored.event),
                id: crate::util::echo(id),
            })?);
        }
        for room in &stored.except_rooms {
            validate_room(room).map_err(|e| name("excluded room", room, e))?;
        }
        let event = intern(&stored.event).ok_or_else(|| PreparedError::TooManyNames {
            event: crate::util::echo(&stored.event),
        })?;
        Ok(Self {
            event,
            targets,
            except_sockets,
            except_rooms: stored.except_rooms.into_iter().map(Cow::Owned).collect(),
            payload: stored.payload.to_owned(),
        })
    }
}

/// The `&'static str` for an event name read back from storage: the
/// registered event's own name when there is one, else a copy kept for the
/// life of the process (at most [`MAX_FOREIGN_NAMES`] of them), because
/// errors and transports name events with `&'static str`.
fn intern(name: &str) -> Option<&'static str> {
    if let Some(d) = inventory::iter::<EventDescriptor>
        .into_iter()
        .find(|d| d.name == name)
    {
        return Some(d.name);
    }
    static FOREIGN: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = FOREIGN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(found) = set.get(name) {
        return Some(found);
    }
    if set.len() >= MAX_FOREIGN_NAMES {
        return None;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    set.insert(leaked);
    Some(leaked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(json: &str) -> Result<PreparedDelivery, PreparedError> {
        PreparedDelivery::from_json(json)
    }

    #[test]
    fn round_trips_and_keeps_the_payload_bytes() {
        let sid = Sid::new();
        let json = format!(
            r#"{{"event":"e","targets":[["/",["a","b"]],["/x",["c"]]],"except_sockets":["{sid}"],"except_rooms":["m"],"payload":{{"z":1, "a":[2]}}}}"#
        );
        let p = prepared(&json).unwrap();
        assert_eq!(p.targets().len(), 3);
        assert_eq!(p.payload().get(), r#"{"z":1, "a":[2]}"#);
        assert_eq!(p.ordering_key(), "/#a");
        let again = prepared(&p.to_json()).unwrap();
        assert_eq!(again.to_json(), p.to_json());
        assert_eq!(again.except_sockets, [sid]);
    }

    #[test]
    fn bad_rows_are_errors_that_name_the_event() {
        for (json, needle) in [
            ("not json", "not valid"),
            (r#"{"event":"e","targets":[],"payload":1}"#, "no target"),
            (
                r#"{"event":"e","targets":[["nope",["a"]]],"payload":1}"#,
                "invalid target",
            ),
            (
                r#"{"event":"","targets":[["/",["a"]]],"payload":1}"#,
                "invalid event name",
            ),
            (
                r#"{"event":"e","targets":[["/",["a"]]],"except_sockets":["x"],"payload":1}"#,
                "not a socket id",
            ),
            (
                r#"{"event":"e","targets":[["/",[""]]],"payload":1}"#,
                "invalid target",
            ),
        ] {
            let e = prepared(json).unwrap_err().to_string();
            assert!(e.contains(needle), "{json}: {e}");
        }
    }
}
