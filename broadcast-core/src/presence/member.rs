//! Who a presence member is, as the wire and the stores hold it, and what
//! can go wrong with presence.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

/// Longest member id, in bytes: ids are room-map keys in Redis and repeated
/// in every presence frame.
///
/// ```
/// use broadcast_core::presence::{MAX_MEMBER_ID_LEN, Member};
/// assert!(Member::new("x".repeat(MAX_MEMBER_ID_LEN + 1)).is_err());
/// ```
pub const MAX_MEMBER_ID_LEN: usize = 128;
/// Largest member object (id and metadata), in bytes of JSON: every join
/// ack carries every member.
///
/// ```
/// use broadcast_core::presence::{MAX_MEMBER_BYTES, Member};
/// let big = serde_json::json!({ "bio": "x".repeat(MAX_MEMBER_BYTES) });
/// assert!(Member::with_meta("alice", &big).is_err());
/// ```
pub const MAX_MEMBER_BYTES: usize = 1024;

/// One member of a presence room: a JSON object with a string `id` (the
/// user, counted once however many connections it has) and, optionally,
/// more fields (its metadata). Serialized as that object.
///
/// ```
/// use broadcast_core::presence::Member;
/// #[derive(serde::Serialize)]
/// struct Meta { color: &'static str }
///
/// let alice = Member::new("alice").unwrap();
/// assert_eq!(serde_json::to_string(&alice).unwrap(), r#"{"id":"alice"}"#);
/// let carol = Member::with_meta("carol", &Meta { color: "red" }).unwrap();
/// assert_eq!(carol.json(), r#"{"id":"carol","color":"red"}"#);
/// assert!(Member::new("").is_err());
/// ```
#[derive(Clone)]
pub struct Member {
    json: Arc<str>,
    id: Id,
}

/// Where a member's id is: in its JSON (bytes `start..end`, when the JSON
/// string has no escapes), so that a member is one allocation (lists of
/// 10,000 are read on every query); or its own string.
#[derive(Clone)]
enum Id {
    In(u16, u16),
    Own(Arc<str>),
}

/// The span of `id`, a slice of `json`, within it; `None` if it is not one.
fn span(json: &str, id: &str) -> Option<Id> {
    let start = (id.as_ptr() as usize).checked_sub(json.as_ptr() as usize)?;
    let end = start + id.len();
    if json.get(start..end) != Some(id) {
        return None;
    }
    Some(Id::In(u16::try_from(start).ok()?, u16::try_from(end).ok()?))
}

impl PartialEq for Member {
    fn eq(&self, other: &Self) -> bool {
        // The id is read from the JSON: the JSON alone says who it is.
        self.json == other.json
    }
}

impl Eq for Member {}

impl Member {
    /// A member with only an id.
    pub fn new(id: impl Into<String>) -> Result<Self, PresenceError> {
        Self::with_meta(id, &serde_json::Map::new())
    }

    /// A member with metadata: `meta` must serialize to a JSON object
    /// without an `id` key; its fields follow `id`.
    pub fn with_meta<M: Serialize + ?Sized>(
        id: impl Into<String>,
        meta: &M,
    ) -> Result<Self, PresenceError> {
        let id = id.into();
        check_id(&id)?;
        let invalid = |reason: String| PresenceError::InvalidMember {
            id: crate::util::echo(&id),
            reason,
        };
        let meta = serde_json::to_value(meta).map_err(|e| invalid(e.to_string()))?;
        let serde_json::Value::Object(meta) = meta else {
            return Err(invalid(
                "the metadata must serialize to a JSON object".into(),
            ));
        };
        if meta.contains_key("id") {
            return Err(invalid("the metadata cannot have an `id` field".into()));
        }
        // `id` first, as clients read it; then the metadata in its order.
        let id_json = serde_json::to_string(&id).map_err(|e| invalid(e.to_string()))?;
        let json = if meta.is_empty() {
            format!("{{\"id\":{id_json}}}")
        } else {
            let rest = serde_json::to_string(&meta).map_err(|e| invalid(e.to_string()))?;
            format!("{{\"id\":{id_json},{}", &rest[1..])
        };
        if json.len() > MAX_MEMBER_BYTES {
            return Err(invalid(format!(
                "the member is {} bytes of JSON, over the {MAX_MEMBER_BYTES}-byte limit",
                json.len()
            )));
        }
        // `{"id":"` is 7 bytes; the id is there as-is unless it was escaped.
        let at = if id_json.len() == id.len() + 2 {
            span(&json, &json[7..7 + id.len()])
        } else {
            None
        };
        Ok(Self {
            id: at.unwrap_or_else(|| Id::Own(id.into())),
            json: json.into(),
        })
    }

    /// Reads a member back from its JSON (as a store holds it): an object
    /// with a valid string `id`, within [`MAX_MEMBER_BYTES`].
    ///
    /// ```
    /// use broadcast_core::presence::Member;
    /// assert_eq!(Member::from_json(r#"{"id":"bob","x":1}"#).unwrap().id(), "bob");
    /// assert!(Member::from_json(r#"{"name":"bob"}"#).is_err());
    /// assert!(Member::from_json(r#"["bob"]"#).is_err());
    /// ```
    pub fn from_json(json: &str) -> Result<Self, PresenceError> {
        let corrupt = |reason: String| PresenceError::InvalidMember {
            id: String::new(),
            reason,
        };
        if json.len() > MAX_MEMBER_BYTES {
            return Err(corrupt(format!(
                "{} bytes of JSON, over the {MAX_MEMBER_BYTES}-byte limit",
                json.len()
            )));
        }
        // The framework's own form of a member without metadata, checked by
        // hand: member lists of 10,000 are read on every query, and a serde
        // pass per member was most of their cost.
        if let Some(id) = plain_member_id(json) {
            check_id(id)?;
            return Ok(Self {
                id: span(json, id).unwrap_or_else(|| Id::Own(id.into())),
                json: json.into(),
            });
        }
        // Anything else: only the id is kept; the rest is checked for being
        // JSON without building it.
        #[derive(serde::Deserialize)]
        struct WithId<'a> {
            #[serde(borrow)]
            id: std::borrow::Cow<'a, str>,
        }
        if !json.trim_start().starts_with('{') {
            return Err(corrupt("not a JSON object".into()));
        }
        let parsed: WithId<'_> = serde_json::from_str(json)
            .map_err(|e| corrupt(format!("not an object with a string `id` ({e})")))?;
        check_id(&parsed.id)?;
        let id = match &parsed.id {
            std::borrow::Cow::Borrowed(id) => span(json, id),
            std::borrow::Cow::Owned(_) => None,
        };
        Ok(Self {
            id: id.unwrap_or_else(|| Id::Own(parsed.id.as_ref().into())),
            json: json.into(),
        })
    }

    /// The member's id.
    ///
    /// ```
    /// assert_eq!(broadcast_core::presence::Member::new("alice").unwrap().id(), "alice");
    /// ```
    pub fn id(&self) -> &str {
        match &self.id {
            Id::In(start, end) => self
                .json
                .get(usize::from(*start)..usize::from(*end))
                .unwrap_or_default(),
            Id::Own(id) => id,
        }
    }

    /// The member's JSON object, as clients receive it.
    ///
    /// ```
    /// let m = broadcast_core::presence::Member::new("alice").unwrap();
    /// assert_eq!(m.json(), r#"{"id":"alice"}"#);
    /// ```
    pub fn json(&self) -> &str {
        &self.json
    }
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.json)
    }
}

impl Serialize for Member {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Checked JSON by construction; re-parsing it is the only failure.
        let raw: &RawValue = serde_json::from_str(&self.json).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

/// The id of `{"id":"<id>"}` when `<id>` needs no unescaping (no `"`, `\\`
/// or control character): exactly what [`Member::new`] writes for such an
/// id. Anything else is `None`, for the full parser.
fn plain_member_id(json: &str) -> Option<&str> {
    let id = json.strip_prefix("{\"id\":\"")?.strip_suffix("\"}")?;
    // JSON strings hold no raw control characters; `check_id` refuses them
    // in ids anyway.
    if id.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        return None;
    }
    Some(id)
}

fn check_id(id: &str) -> Result<(), PresenceError> {
    let reason = if id.is_empty() {
        "the id is empty".to_owned()
    } else if id.len() > MAX_MEMBER_ID_LEN {
        format!("the id is over {MAX_MEMBER_ID_LEN} bytes")
    } else if id.chars().any(char::is_control) {
        "the id has control characters".to_owned()
    } else {
        return Ok(());
    };
    Err(PresenceError::InvalidMember {
        id: crate::util::echo(id),
        reason,
    })
}

/// Why a presence operation failed. Each variant names the room (or the
/// member) it was about.
///
/// ```
/// use broadcast_core::presence::PresenceError;
/// let e = PresenceError::Store { op: "join", room: "chat|1".into(), reason: "timeout".into() };
/// assert_eq!(e.to_string(), "presence join in room `chat|1` failed: timeout");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PresenceError {
    /// The member the application gave (or a store held) is not valid.
    #[error("invalid presence member `{id}`: {reason}")]
    InvalidMember {
        /// The member id (truncated; empty when there was none).
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The store (Redis) failed or answered something unexpected.
    #[error("presence {op} in room `{room}` failed: {reason}")]
    Store {
        /// The operation: `join`, `leave`, `members`, `count`, `cleanup`.
        op: &'static str,
        /// The room.
        room: String,
        /// The store's message.
        reason: String,
    },
    /// Presence is not set up for this server.
    #[error("presence is not available: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The hand-checked form and the serde path agree on what they both
    /// read, and the hand check passes everything else on.
    #[test]
    fn the_plain_form_reads_like_the_parser() {
        for id in [
            "alice",
            "u10000",
            "ünï cödé",
            "a b",
            "x".repeat(128).as_str(),
        ] {
            let m = Member::new(id).unwrap();
            assert_eq!(plain_member_id(m.json()), Some(id));
            assert_eq!(Member::from_json(m.json()).unwrap(), m);
        }
        for json in [
            r#"{"id":"a\"b"}"#,
            r#"{"id":"a\\b"}"#,
            r#"{"id":"a\u0001"}"#,
            r#"{"id":"a","x":1}"#,
            r#"{"id":"a"} "#,
            r#" {"id":"a"}"#,
            r#"{"id":"a""#,
            r#"{"id":"}"#,
        ] {
            assert_eq!(plain_member_id(json), None, "{json}");
        }
        // Escapes and metadata still read through the parser.
        assert_eq!(Member::from_json(r#"{"id":"a\"b"}"#).unwrap().id(), "a\"b");
        assert_eq!(Member::from_json(r#"{"id":"a","x":1}"#).unwrap().id(), "a");
        // Bad ids are refused on both paths.
        for bad in [r#"{"id":""}"#, "{\"id\":\"a\u{7f}\"}", r#"{"id":"\u0007"}"#] {
            assert!(Member::from_json(bad).is_err(), "{bad}");
        }
        // Built or read, escaped or not, with metadata or not: one member.
        for (id, meta) in [
            ("a\"b", json!({})),
            ("a", json!({"x": 1})),
            ("é\\", json!({"y": "z"})),
        ] {
            let built = Member::with_meta(id, &meta).unwrap();
            let read = Member::from_json(built.json()).unwrap();
            assert_eq!((built.id(), read.id()), (id, id));
            assert_eq!(built, read);
        }
        let long = format!(r#"{{"id":"{}"}}"#, "x".repeat(MAX_MEMBER_ID_LEN + 1));
        assert!(Member::from_json(&long).is_err());
    }
}
