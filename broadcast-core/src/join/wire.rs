//! What the join protocol sends to clients, once: the Rust types the
//! handlers serialize ([`RoomNotice`], [`RoomError`], [`RoomReply`]) and,
//! next to each, its [`WireShape`]: the same shape described for client-type
//! generators ([`typescript`](crate::typescript) renders it).
//!
//! A unit test serializes every variant of every type, with each optional
//! field present and absent, and fails if the JSON and the shape disagree;
//! `tests/typescript_transcript.rs` type-checks what a real server sends
//! against the generated declarations.

use broadcast_rules::protocol::{
    ERROR_EVENT, JOINED_EVENT, LEFT_EVENT, PRESENCE_DIFF_EVENT, PRESENCE_JOINED_EVENT,
    PRESENCE_LEFT_EVENT,
};
use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::position::Position;
use crate::presence::Member;

/// The payload of `joined` and `left`: `{"room": "chat|1"}`, and for a room
/// that keeps history, `"position"`: where its stream was when the socket
/// joined.
///
/// ```
/// use broadcast_core::join::RoomNotice;
/// let n = RoomNotice { room: "chat|1".into(), position: None };
/// assert_eq!(serde_json::to_string(&n).unwrap(), r#"{"room":"chat|1"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoomNotice {
    /// The room's name.
    pub room: String,
    /// A history room's position when the socket joined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
}

impl RoomNotice {
    /// The shape of [`RoomNotice`] on the wire.
    pub const SHAPE: WireShape = WireShape {
        name: "RoomNotice",
        doc: "The payload of `joined` and `left`.",
        variants: &[&[
            WireField::required("room", WireType::String),
            WireField::optional("position", WireType::Shape(&POSITION_SHAPE)),
        ]],
    };
}

/// The shape of [`Position`]: `{"offset": 17, "epoch": "..."}`.
pub const POSITION_SHAPE: WireShape = WireShape {
    name: "Position",
    doc: "A place in a room's event stream: the last event's offset (0 before the first) and the stream's epoch.",
    variants: &[&[
        WireField::required("offset", WireType::Number),
        WireField::required("epoch", WireType::String),
    ]],
};

/// The shape of [`EventPosition`](crate::EventPosition), the argument after
/// the payload of an event delivered to a history room.
pub const EVENT_POSITION_SHAPE: WireShape = WireShape {
    name: "EventPosition",
    doc: "The argument after the payload of an event delivered to a room that keeps history.",
    variants: &[&[
        WireField::required("room", WireType::String),
        WireField::required("offset", WireType::Number),
        WireField::required("epoch", WireType::String),
    ]],
};

/// The shape of the join options, the optional argument between a join's
/// data and its ack: `{"since": <Position>}` asks for the events missed
/// since that position ([`Since`](super::Since)).
pub const JOIN_OPTIONS_SHAPE: WireShape = WireShape {
    name: "JoinOptions",
    doc: "Options of a join: `since` asks a room that keeps history for the events after that position.",
    variants: &[&[WireField::optional(
        "since",
        WireType::Shape(&POSITION_SHAPE),
    )]],
};

/// The payload of the `error` event, and the `error` of a failed ack:
/// `{"type": "forbidden", "room": ...}`,
/// `{"type": "validation_error", "msg": ..., "key"?: ..., "room"?: ...}` or
/// `{"type": "rate_limited", "msg": ..., "key": ...}`.
///
/// ```
/// use broadcast_core::join::RoomError;
/// let e = RoomError::ValidationError { msg: "no".into(), key: Some("chat".into()), room: None };
/// assert_eq!(
///     serde_json::to_string(&e).unwrap(),
///     r#"{"type":"validation_error","msg":"no","key":"chat"}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RoomError {
    /// The socket may not be in the room.
    Forbidden {
        /// The room's name.
        room: String,
    },
    /// The request was refused for any other reason.
    ValidationError {
        /// What was wrong, for people.
        msg: String,
        /// The room key, when the request named one.
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// The room's name, once the data named one.
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<String>,
    },
    /// The socket asked to join too often, or with too many joins
    /// unanswered; the request was not looked at. Asking again later works.
    RateLimited {
        /// What the limits are, for people.
        msg: String,
        /// The room key of the refused request.
        key: String,
    },
}

impl RoomError {
    /// The shape of [`RoomError`] on the wire.
    pub const SHAPE: WireShape = WireShape {
        name: "RoomError",
        doc: "The payload of the `error` event (and of a failed ack).",
        variants: &[
            &[
                WireField::required("type", WireType::Tag("forbidden")),
                WireField::required("room", WireType::String),
            ],
            &[
                WireField::required("type", WireType::Tag("validation_error")),
                WireField::required("msg", WireType::String),
                WireField::optional("key", WireType::String),
                WireField::optional("room", WireType::String),
            ],
            &[
                WireField::required("type", WireType::Tag("rate_limited")),
                WireField::required("msg", WireType::String),
                WireField::required("key", WireType::String),
            ],
        ],
    };
}

/// The ack of `join_<key>` and `leave_<key>`, when the client asked for one:
/// `{"ok": true, "room": ...}` or `{"ok": false, "error": <RoomError>}`.
/// A join of a room that keeps history adds `"position"`, and when the
/// client sent `since`, `"recovered"`: true when every event it missed was
/// sent before this ack, false when it must reload its state.
///
/// ```
/// use broadcast_core::join::{RoomError, RoomReply};
/// let ok = RoomReply::Ok { room: "lobby".into(), position: None, recovered: None, members: None };
/// assert_eq!(serde_json::to_string(&ok).unwrap(), r#"{"ok":true,"room":"lobby"}"#);
/// let alice = broadcast_core::presence::Member::new("alice").unwrap();
/// let position = Some(broadcast_core::Position { offset: 17, epoch: "e".into() });
/// let ok = RoomReply::Ok {
///     room: "chat|1".into(),
///     position,
///     recovered: Some(true),
///     members: Some(vec![alice]),
/// };
/// assert_eq!(
///     serde_json::to_string(&ok).unwrap(),
///     r#"{"ok":true,"room":"chat|1","recovered":true,"position":{"offset":17,"epoch":"e"},"members":[{"id":"alice"}]}"#
/// );
/// let refused = RoomReply::Err { error: RoomError::Forbidden { room: "chat|1".into() } };
/// assert_eq!(
///     serde_json::to_string(&refused).unwrap(),
///     r#"{"ok":false,"error":{"type":"forbidden","room":"chat|1"}}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomReply {
    /// Joined (or already in the room), or left.
    Ok {
        /// The room's name.
        room: String,
        /// A history room's position when the socket joined.
        position: Option<Position>,
        /// With `since`: whether every missed event was replayed.
        recovered: Option<bool>,
        /// For a join of a [presence](crate::presence) room: every member
        /// after the join, the joiner included, sorted by id.
        members: Option<Vec<Member>>,
    },
    /// Refused; the same payload as the `error` event.
    Err {
        /// Why.
        error: RoomError,
    },
}

impl RoomReply {
    /// The shape of [`RoomReply`] on the wire.
    pub const SHAPE: WireShape = WireShape {
        name: "RoomReply",
        doc: "The reply a join or leave gets when the client asks for an acknowledgement.",
        variants: &[
            &[
                WireField::required("ok", WireType::Bool(true)),
                WireField::required("room", WireType::String),
                WireField::optional("recovered", WireType::Boolean),
                WireField::optional("position", WireType::Shape(&POSITION_SHAPE)),
                WireField::optional("members", WireType::Array(&PRESENCE_MEMBER_SHAPE)),
            ],
            &[
                WireField::required("ok", WireType::Bool(false)),
                WireField::required("error", WireType::Shape(&RoomError::SHAPE)),
            ],
        ],
    };
}

impl Serialize for RoomReply {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("RoomReply", 5)?;
        match self {
            Self::Ok {
                room,
                position,
                recovered,
                members,
            } => {
                s.serialize_field("ok", &true)?;
                s.serialize_field("room", room)?;
                if let Some(recovered) = recovered {
                    s.serialize_field("recovered", recovered)?;
                }
                if let Some(position) = position {
                    s.serialize_field("position", position)?;
                }
                if let Some(members) = members {
                    s.serialize_field("members", members)?;
                }
            }
            Self::Err { error } => {
                s.serialize_field("ok", &false)?;
                s.serialize_field("error", error)?;
            }
        }
        s.end()
    }
}

/// The shape of a presence [`Member`]: an object with a string `id`; the
/// application's metadata fields, if any, come with it.
///
/// ```
/// assert_eq!(broadcast_core::join::PRESENCE_MEMBER_SHAPE.name, "PresenceMember");
/// ```
pub const PRESENCE_MEMBER_SHAPE: WireShape = WireShape {
    name: "PresenceMember",
    doc: "A member of a presence room (its metadata fields, if any, come with `id`).",
    variants: &[&[WireField::required("id", WireType::String)]],
};

/// The payload of `presence_joined` and `presence_left`:
/// `{"room": "chat|1", "member": {"id": "alice"}}`.
///
/// ```
/// use broadcast_core::join::PresenceNotice;
/// use broadcast_core::presence::Member;
/// let n = PresenceNotice { room: "chat|1".into(), member: Member::new("alice").unwrap() };
/// assert_eq!(
///     serde_json::to_string(&n).unwrap(),
///     r#"{"room":"chat|1","member":{"id":"alice"}}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PresenceNotice {
    /// The room's name.
    pub room: String,
    /// Who joined or left.
    pub member: Member,
}

impl PresenceNotice {
    /// The shape of [`PresenceNotice`] on the wire.
    pub const SHAPE: WireShape = WireShape {
        name: "PresenceNotice",
        doc: "The payload of `presence_joined` and `presence_left`.",
        variants: &[&[
            WireField::required("room", WireType::String),
            WireField::required("member", WireType::Shape(&PRESENCE_MEMBER_SHAPE)),
        ]],
    };
}

/// The payload of `presence_diff`: the transitions of a room coalesced
/// past its rate, the last one of each member (see
/// [`presence`](crate::presence)).
///
/// ```
/// use broadcast_core::join::PresenceDiff;
/// use broadcast_core::presence::Member;
/// let d = PresenceDiff {
///     room: "chat|1".into(),
///     joined: vec![Member::new("bob").unwrap()],
///     left: vec![],
/// };
/// assert_eq!(
///     serde_json::to_string(&d).unwrap(),
///     r#"{"room":"chat|1","joined":[{"id":"bob"}],"left":[]}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PresenceDiff {
    /// The room's name.
    pub room: String,
    /// Members whose first connection joined.
    pub joined: Vec<Member>,
    /// Members whose last connection left.
    pub left: Vec<Member>,
}

impl PresenceDiff {
    /// The shape of [`PresenceDiff`] on the wire.
    pub const SHAPE: WireShape = WireShape {
        name: "PresenceDiff",
        doc: "The payload of `presence_diff`: coalesced presence transitions.",
        variants: &[&[
            WireField::required("room", WireType::String),
            WireField::required("joined", WireType::Array(&PRESENCE_MEMBER_SHAPE)),
            WireField::required("left", WireType::Array(&PRESENCE_MEMBER_SHAPE)),
        ]],
    };
}

/// Every event the join protocol sends to clients, with its payload's shape.
/// The names are [`broadcast_rules::protocol`]'s.
pub const SERVER_EVENTS: &[(&str, &WireShape)] = &[
    (JOINED_EVENT, &RoomNotice::SHAPE),
    (LEFT_EVENT, &RoomNotice::SHAPE),
    (ERROR_EVENT, &RoomError::SHAPE),
    (PRESENCE_JOINED_EVENT, &PresenceNotice::SHAPE),
    (PRESENCE_LEFT_EVENT, &PresenceNotice::SHAPE),
    (PRESENCE_DIFF_EVENT, &PresenceDiff::SHAPE),
];

/// A JSON object type the protocol sends, described for generators of
/// client types: one object per variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireShape {
    /// The type's name (the same as the Rust type's).
    pub name: &'static str,
    /// One line for the generated type's doc comment.
    pub doc: &'static str,
    /// The variants' fields, in the order the server writes them.
    pub variants: &'static [&'static [WireField]],
}

/// A field of a [`WireShape`] variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireField {
    /// The JSON key.
    pub name: &'static str,
    /// The value's type.
    pub ty: WireType,
    /// Whether the key may be absent; an optional field is never `null`.
    pub optional: bool,
}

impl WireField {
    /// A field that is always there.
    pub const fn required(name: &'static str, ty: WireType) -> Self {
        Self {
            name,
            ty,
            optional: false,
        }
    }

    /// A field that is there or absent, never `null`.
    pub const fn optional(name: &'static str, ty: WireType) -> Self {
        Self {
            name,
            ty,
            optional: true,
        }
    }
}

/// The type of a [`WireField`]'s value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireType {
    /// Any string.
    String,
    /// Exactly this string: the variant's tag.
    Tag(&'static str),
    /// Exactly this boolean.
    Bool(bool),
    /// Any boolean.
    Boolean,
    /// A non-negative integer.
    Number,
    /// An object of another shape.
    Shape(&'static WireShape),
    /// An array of objects of another shape.
    Array(&'static WireShape),
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::{Value, json};

    use super::*;

    /// Every variant of every wire type, each optional field present and
    /// absent. The struct literals and the matches (no `..`, no `_` arm)
    /// make a new field or variant fail to compile until it has examples
    /// here, and then fail [`the_shapes_describe_the_json`] until its shape
    /// has it too.
    fn examples() -> Vec<(&'static WireShape, Value)> {
        let position = || Position {
            offset: 3,
            epoch: "e".into(),
        };
        let notices = [
            RoomNotice {
                room: "r".into(),
                position: None,
            },
            RoomNotice {
                room: "r".into(),
                position: Some(position()),
            },
        ];
        let errors = [
            RoomError::Forbidden { room: "r".into() },
            RoomError::ValidationError {
                msg: "m".into(),
                key: Some("k".into()),
                room: Some("r".into()),
            },
            RoomError::ValidationError {
                msg: "m".into(),
                key: None,
                room: None,
            },
            RoomError::RateLimited {
                msg: "m".into(),
                key: "k".into(),
            },
        ];
        let member = || Member::new("m").unwrap();
        let presence = [PresenceNotice {
            room: "r".into(),
            member: member(),
        }];
        let diffs = [PresenceDiff {
            room: "r".into(),
            joined: vec![member()],
            left: vec![],
        }];
        let mut replies = vec![
            RoomReply::Ok {
                room: "r".into(),
                position: None,
                recovered: None,
                members: None,
            },
            RoomReply::Ok {
                room: "r".into(),
                position: Some(position()),
                recovered: Some(true),
                members: Some(vec![member()]),
            },
        ];
        replies.extend(errors.iter().map(|e| RoomReply::Err { error: e.clone() }));
        for e in &errors {
            match e {
                RoomError::Forbidden { room: _ } => {}
                RoomError::ValidationError {
                    msg: _,
                    key: _,
                    room: _,
                } => {}
                RoomError::RateLimited { msg: _, key: _ } => {}
            }
        }
        for r in &replies {
            match r {
                RoomReply::Ok {
                    room: _,
                    position: _,
                    recovered: _,
                    members: _,
                }
                | RoomReply::Err { error: _ } => {}
            }
        }
        let mut out = Vec::new();
        for n in &notices {
            out.push((&RoomNotice::SHAPE, serde_json::to_value(n).unwrap()));
        }
        for e in &errors {
            out.push((&RoomError::SHAPE, serde_json::to_value(e).unwrap()));
        }
        for r in &replies {
            out.push((&RoomReply::SHAPE, serde_json::to_value(r).unwrap()));
        }
        for p in &presence {
            out.push((&PresenceNotice::SHAPE, serde_json::to_value(p).unwrap()));
        }
        for d in &diffs {
            out.push((&PresenceDiff::SHAPE, serde_json::to_value(d).unwrap()));
        }
        out
    }

    /// The variants of `shape` that `value` is an instance of.
    fn matching(shape: &WireShape, value: &Value) -> Vec<usize> {
        let Some(obj) = value.as_object() else {
            return vec![];
        };
        (0..shape.variants.len())
            .filter(|&i| {
                let fields = shape.variants[i];
                let known = obj
                    .keys()
                    .all(|k| fields.iter().any(|f| f.name == k.as_str()));
                let complete = fields.iter().all(|f| match obj.get(f.name) {
                    None => f.optional,
                    Some(v) => is(f.ty, v),
                });
                known && complete
            })
            .collect()
    }

    fn is(ty: WireType, v: &Value) -> bool {
        match ty {
            WireType::String => v.is_string(),
            WireType::Tag(t) => v.as_str() == Some(t),
            WireType::Bool(b) => v.as_bool() == Some(b),
            WireType::Boolean => v.is_boolean(),
            WireType::Number => v.is_u64(),
            WireType::Shape(s) => matching(s, v).len() == 1,
            WireType::Array(s) => v
                .as_array()
                .is_some_and(|a| a.iter().all(|v| matching(s, v).len() == 1)),
        }
    }

    #[test]
    fn the_shapes_describe_the_json() {
        // (shape, variant, field, present)
        let mut seen = BTreeSet::new();
        for (shape, value) in examples() {
            let m = matching(shape, &value);
            assert_eq!(m.len(), 1, "{} does not describe {value}", shape.name);
            let obj = value.as_object().unwrap();
            for f in shape.variants[m[0]] {
                seen.insert((shape.name, m[0], f.name, obj.contains_key(f.name)));
            }
        }
        // Every field of every shape was seen, and optional ones both ways.
        for shape in [
            &RoomNotice::SHAPE,
            &RoomError::SHAPE,
            &RoomReply::SHAPE,
            &PresenceNotice::SHAPE,
            &PresenceDiff::SHAPE,
        ] {
            for (i, fields) in shape.variants.iter().enumerate() {
                for f in *fields {
                    assert!(
                        seen.contains(&(shape.name, i, f.name, true)),
                        "{}.{} never sent",
                        shape.name,
                        f.name
                    );
                    assert_eq!(
                        seen.contains(&(shape.name, i, f.name, false)),
                        f.optional,
                        "{}.{}: optional in the shape iff absent in some JSON",
                        shape.name,
                        f.name
                    );
                }
            }
        }
    }

    #[test]
    fn the_shapes_are_named_after_the_types() {
        for (shape, ty) in [
            (&RoomNotice::SHAPE, std::any::type_name::<RoomNotice>()),
            (&RoomError::SHAPE, std::any::type_name::<RoomError>()),
            (&RoomReply::SHAPE, std::any::type_name::<RoomReply>()),
            (
                &PresenceNotice::SHAPE,
                std::any::type_name::<PresenceNotice>(),
            ),
            (&PresenceDiff::SHAPE, std::any::type_name::<PresenceDiff>()),
        ] {
            assert!(ty.ends_with(&format!("::{}", shape.name)), "{ty}");
        }
    }

    #[test]
    fn every_protocol_event_has_a_shape() {
        let described: Vec<&str> = SERVER_EVENTS.iter().map(|(e, _)| *e).collect();
        assert_eq!(described, broadcast_rules::protocol::PROTOCOL_EVENTS);
    }

    #[test]
    fn a_shape_rejects_other_json() {
        let s = &RoomReply::SHAPE;
        assert_eq!(matching(s, &json!({"ok": true, "room": "r"})), [0]);
        assert!(matching(s, &json!({"ok": true, "room": "r", "x": 1})).is_empty());
        assert!(matching(s, &json!({"ok": true})).is_empty());
        assert!(matching(s, &json!({"ok": false, "error": {"type": "forbidden"}})).is_empty());
        let e = &RoomError::SHAPE;
        assert!(
            matching(
                e,
                &json!({"type": "validation_error", "msg": "m", "key": null})
            )
            .is_empty()
        );
    }
}
