//! The event contract: what every broadcast event says about itself.

use std::future::Future;

use serde::Serialize;

use crate::target::IntoTargets;

/// A typed broadcast event.
///
/// Usually derived (`#[derive(BroadcastEvent)]`); written by hand it looks
/// like this:
///
/// ```
/// use broadcast_core::{BroadcastEvent, PayloadError};
/// use serde::Serialize;
///
/// #[derive(Serialize)]
/// struct UpdateChat { chat_id: u64, title: String }
///
/// impl BroadcastEvent for UpdateChat {
///     const NAME: &'static str = "update_chat";
///
///     async fn broadcast_on(&self) -> impl broadcast_core::IntoTargets {
///         format!("chat|{}", self.chat_id)
///     }
///
///     async fn broadcast_as(&self) -> Result<impl Serialize, PayloadError> {
///         Ok(self)
///     }
/// }
/// ```
///
/// Every future is `Send`, so events can be broadcast from `tokio::spawn`ed
/// tasks and axum handlers.
pub trait BroadcastEvent: Send + Sync {
    /// The Socket.IO event name clients listen to.
    const NAME: &'static str;

    /// The namespace that plain room strings from `broadcast_on` live in.
    /// Typed rooms carry their own namespace.
    const NAMESPACE: &'static str = crate::target::DEFAULT_NAMESPACE;

    /// The rooms to deliver to. Default: one room named after the event.
    fn broadcast_on(&self) -> impl Future<Output = impl IntoTargets> + Send {
        std::future::ready(Self::NAME)
    }

    /// Whether to send at all. Default: always.
    fn broadcast_when(&self) -> impl Future<Output = bool> + Send {
        std::future::ready(true)
    }

    /// The payload clients receive. It is serialized once per broadcast.
    fn broadcast_as(&self) -> impl Future<Output = Result<impl Serialize, PayloadError>> + Send;
}

/// A payload shaped from application data, possibly by awaiting more data
/// (the `Resource.dump()` of Laravel-style frameworks).
///
/// Use one from `broadcast_as` (or `as = ...` in the derive): a resource value
/// returned there is dumped before it is serialized.
///
/// ```
/// use broadcast_core::{PayloadError, Resource};
/// use serde::Serialize;
///
/// struct ChatResource { id: u64 }
///
/// #[derive(Serialize)]
/// struct ChatJson { id: u64, members: Vec<String> }
///
/// impl Resource for ChatResource {
///     type Output = ChatJson;
///     async fn dump(&self) -> Result<ChatJson, PayloadError> {
///         // e.g. load the members from the database here
///         Ok(ChatJson { id: self.id, members: vec!["alice".into()] })
///     }
/// }
/// ```
pub trait Resource: Send + Sync {
    /// What the resource dumps to.
    type Output: Serialize;

    /// Builds the payload.
    fn dump(&self) -> impl Future<Output = Result<Self::Output, PayloadError>> + Send;
}

/// A payload could not be built (a resource failed to load its data).
///
/// ```
/// use broadcast_core::PayloadError;
/// let e = PayloadError::msg("chat 7 was deleted");
/// assert_eq!(e.to_string(), "chat 7 was deleted");
/// ```
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct PayloadError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl PayloadError {
    /// An error from any error value.
    pub fn new(err: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self(err.into())
    }

    /// An error from a message.
    pub fn msg(msg: impl std::fmt::Display) -> Self {
        Self(msg.to_string().into())
    }
}
