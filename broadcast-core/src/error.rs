//! Errors of a broadcast. Each names the event and, where one exists, the
//! target that failed.

use std::time::Duration;

use broadcast_rules::NameError;

use crate::target::Target;

/// Why a broadcast failed.
///
/// ```
/// use broadcast_core::{BroadcastError, Target};
/// use broadcast_core::rules::{NameError, NameKind};
/// let e = BroadcastError::InvalidTarget {
///     event: "update_chat",
///     target: Target::new("/", ""),
///     source: NameError::Empty(NameKind::Room),
/// };
/// assert_eq!(
///     e.to_string(),
///     "event `update_chat`: invalid target `/#`: the room name is empty"
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BroadcastError {
    /// `broadcast()` was called before a broadcaster was installed.
    #[error(
        "event `{event}`: no broadcaster installed; call `broadcast_core::install(..)` at startup"
    )]
    NotInstalled {
        /// The event name.
        event: &'static str,
    },
    /// A room or namespace name is not acceptable.
    #[error("event `{event}`: invalid target `{target}`: {source}")]
    InvalidTarget {
        /// The event name.
        event: &'static str,
        /// The offending target.
        target: Target,
        /// What is wrong with it.
        source: NameError,
    },
    /// An excluded room (`except_rooms`) is not acceptable.
    #[error("event `{event}`: invalid excluded room `{room}`: {source}")]
    InvalidExcept {
        /// The event name.
        event: &'static str,
        /// The offending room.
        room: String,
        /// What is wrong with it.
        source: NameError,
    },
    /// A socket id given as text (`except_socket_id`) is not a Socket.IO
    /// session id; nothing was sent rather than sending to everyone.
    #[error("event `{event}`: `{id}` is not a socket id, so it cannot be excluded")]
    InvalidExceptSocket {
        /// The event name.
        event: &'static str,
        /// The text given, cut to a readable length.
        id: String,
    },
    /// `broadcast_as` (or a resource it returned) failed.
    #[error("event `{event}`: building the payload failed: {source}")]
    Payload {
        /// The event name.
        event: &'static str,
        /// The underlying error.
        source: crate::event::PayloadError,
    },
    /// The payload could not be serialized to JSON.
    #[error("event `{event}`: serializing the payload failed: {source}")]
    Serialize {
        /// The event name.
        event: &'static str,
        /// The serde_json error.
        source: serde_json::Error,
    },
    /// The serialized payload is larger than the configured limit.
    #[error("event `{event}`: payload is {size} bytes, over the {limit}-byte limit")]
    PayloadTooLarge {
        /// The event name.
        event: &'static str,
        /// Serialized size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The transport could not deliver to a namespace.
    #[error("event `{event}`: delivery to {namespace} failed: {source}")]
    Transport {
        /// The event name.
        event: &'static str,
        /// The namespace (with its rooms) whose delivery failed.
        namespace: String,
        /// What the transport reported.
        source: TransportError,
    },
}

impl BroadcastError {
    /// The name of the event that failed.
    pub fn event(&self) -> &'static str {
        match self {
            Self::NotInstalled { event }
            | Self::InvalidTarget { event, .. }
            | Self::InvalidExcept { event, .. }
            | Self::InvalidExceptSocket { event, .. }
            | Self::Payload { event, .. }
            | Self::Serialize { event, .. }
            | Self::PayloadTooLarge { event, .. }
            | Self::Transport { event, .. } => event,
        }
    }

    /// Whether this server's own sockets received the event for every
    /// target and only publishing to the other servers failed
    /// ([`TransportError::RemoteFailed`]).
    ///
    /// This decides how to retry without sending anyone the event twice:
    /// when `true`, the local sockets already have it, so retry with the
    /// server's remote-only broadcaster (`RedisSocketIo::remote`, feature
    /// `redis`), which publishes to the other servers only; retrying with
    /// the usual broadcaster would deliver it to this server's sockets a
    /// second time. When `false`, an error raised before delivery (invalid
    /// target, payload, ...) means nobody got it and a plain retry is safe;
    /// a transport error names one failed namespace, and the broadcast's
    /// other namespaces may have been delivered, so a caller that must
    /// never duplicate sends events of one namespace only.
    ///
    /// ```
    /// use broadcast_core::{BroadcastError, TransportError};
    /// let e = BroadcastError::Transport {
    ///     event: "message_posted",
    ///     namespace: "namespace `/`".into(),
    ///     source: TransportError::RemoteFailed("Redis is down".into()),
    /// };
    /// assert!(e.delivered_locally());
    /// assert!(!BroadcastError::NotInstalled { event: "message_posted" }.delivered_locally());
    /// ```
    pub fn delivered_locally(&self) -> bool {
        matches!(
            self,
            Self::Transport {
                source: TransportError::RemoteFailed(_),
                ..
            }
        )
    }
}

/// A transport's failure to deliver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The Socket.IO server has no such namespace.
    #[error("the server has no namespace `{0}`")]
    UnknownNamespace(String),
    /// The adapter (e.g. Redis) refused or failed the broadcast; no socket
    /// received the event.
    #[error("adapter error: {0}")]
    Adapter(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// Local sockets received the event but other servers may not have:
    /// publishing to the other nodes failed. A server transport reports it
    /// only when every namespace reached its local sockets (a local failure
    /// is reported first), which is what
    /// [`BroadcastError::delivered_locally`] relies on.
    #[error("delivered to this server's sockets, but remote delivery failed: {0}")]
    RemoteFailed(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The transport did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Encoding the message for the wire failed.
    #[error("encoding failed: {0}")]
    Encode(Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// `install` was called twice.
#[derive(Debug, thiserror::Error)]
#[error("a broadcaster is already installed")]
pub struct AlreadyInstalled;
