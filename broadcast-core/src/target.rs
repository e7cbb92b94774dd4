//! Targets: the `(namespace, room)` pairs an event is delivered to.
//!
//! `broadcast_on` may return a room string, a typed [`Room`], or a list of
//! either; [`IntoTargets`] normalizes all of them into one [`Targets`] set,
//! grouped by namespace and deduplicated, so a transport can deliver each
//! namespace with a single emit.

use std::borrow::Cow;
use std::fmt;

use crate::room::Room;

/// Longest room or namespace name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// The namespace used when nothing else is said.
pub const DEFAULT_NAMESPACE: &str = "/";

/// One delivery target: a room inside a namespace.
///
/// ```
/// use broadcast_core::Target;
/// let t = Target::new("/admin", "chat|1");
/// assert_eq!(t.to_string(), "/admin#chat|1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Target {
    /// Socket.IO namespace, starting with `/`.
    pub namespace: Cow<'static, str>,
    /// Room inside the namespace.
    pub room: Cow<'static, str>,
}

impl Target {
    /// A target from a namespace and a room.
    pub fn new(
        namespace: impl Into<Cow<'static, str>>,
        room: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            room: room.into(),
        }
    }
}

impl fmt::Display for Target {
    // `#` cannot appear in a namespace, so `ns#room` reads back unambiguously.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.namespace, self.room)
    }
}

/// The rooms of one namespace that an event goes to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NamespaceTargets {
    /// Socket.IO namespace.
    pub namespace: Cow<'static, str>,
    /// Distinct rooms, in the order they were first named.
    pub rooms: Vec<Cow<'static, str>>,
}

/// A normalized, deduplicated set of targets grouped by namespace.
///
/// ```
/// use broadcast_core::{IntoTargets, Targets};
/// let mut t = Targets::new();
/// vec!["chat|1", "chat|2", "chat|1"].into_targets("/", &mut t);
/// "chat|3".into_targets("/admin", &mut t);
/// assert_eq!(t.len(), 3);
/// assert_eq!(t.namespaces().count(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Targets {
    groups: Vec<NamespaceTargets>,
}

impl Targets {
    /// An empty set.
    pub const fn new() -> Self {
        Self { groups: Vec::new() }
    }

    /// Adds one room in one namespace, ignoring it if already present.
    pub fn push(
        &mut self,
        namespace: impl Into<Cow<'static, str>>,
        room: impl Into<Cow<'static, str>>,
    ) {
        let namespace = namespace.into();
        let room = room.into();
        let group = match self.groups.iter().position(|g| g.namespace == namespace) {
            Some(i) => &mut self.groups[i],
            None => {
                self.groups.push(NamespaceTargets {
                    namespace,
                    rooms: Vec::with_capacity(1),
                });
                let last = self.groups.len() - 1;
                &mut self.groups[last]
            }
        };
        // Events name a handful of rooms; a linear scan beats hashing here.
        if !group.rooms.contains(&room) {
            group.rooms.push(room);
        }
    }

    /// Number of distinct `(namespace, room)` pairs.
    pub fn len(&self) -> usize {
        self.groups.iter().map(|g| g.rooms.len()).sum()
    }

    /// Whether there is no target at all.
    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(|g| g.rooms.is_empty())
    }

    /// The targets grouped by namespace.
    pub fn namespaces(&self) -> impl Iterator<Item = &NamespaceTargets> {
        self.groups.iter()
    }

    /// Every target as a flat `(namespace, room)` list.
    pub fn iter(&self) -> impl Iterator<Item = Target> + '_ {
        self.groups.iter().flat_map(|g| {
            g.rooms
                .iter()
                .map(move |r| Target::new(g.namespace.clone(), r.clone()))
        })
    }

    /// Whether `room` in `namespace` is targeted.
    pub fn contains(&self, namespace: &str, room: &str) -> bool {
        self.groups
            .iter()
            .any(|g| g.namespace == namespace && g.rooms.iter().any(|r| r == room))
    }

    /// Room names of every namespace, flattened (handy for HTTP replies).
    pub fn room_names(&self) -> Vec<String> {
        self.groups
            .iter()
            .flat_map(|g| g.rooms.iter().map(|r| r.to_string()))
            .collect()
    }

    /// Checks every namespace and room name; returns the first bad target.
    pub fn validate(&self) -> Result<(), (Target, TargetError)> {
        for g in &self.groups {
            if let Err(e) = validate_namespace(&g.namespace) {
                let room = g.rooms.first().cloned().unwrap_or_default();
                return Err((Target::new(g.namespace.clone(), room), e));
            }
            for r in &g.rooms {
                validate_room(r).map_err(|e| (Target::new(g.namespace.clone(), r.clone()), e))?;
            }
        }
        Ok(())
    }
}

/// Why a room or namespace name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The name is empty.
    #[error("the {0} name is empty")]
    Empty(NameKind),
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("the {kind} name is {len} bytes long, more than the {MAX_NAME_LEN} allowed")]
    TooLong {
        /// Room or namespace.
        kind: NameKind,
        /// Its length in bytes.
        len: usize,
    },
    /// The name holds a control character.
    #[error("the {0} name contains a control character")]
    ControlCharacter(NameKind),
    /// A namespace must start with `/`.
    #[error("a namespace must start with `/`")]
    NamespaceWithoutSlash,
    /// `#`, `,` and `?` would break Socket.IO packet framing in a namespace.
    #[error("a namespace cannot contain `{0}`")]
    NamespaceCharacter(char),
    /// An excluded socket id is not a Socket.IO session id.
    #[error("not a socket id")]
    InvalidSocketId,
}

/// Which kind of name a [`TargetError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A room name.
    Room,
    /// A namespace path.
    Namespace,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Room => "room",
            NameKind::Namespace => "namespace",
        })
    }
}

fn validate_name(name: &str, kind: NameKind) -> Result<(), TargetError> {
    if name.is_empty() {
        return Err(TargetError::Empty(kind));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(TargetError::TooLong {
            kind,
            len: name.len(),
        });
    }
    if name.chars().any(char::is_control) {
        return Err(TargetError::ControlCharacter(kind));
    }
    Ok(())
}

/// Checks a room name: non-empty, at most [`MAX_NAME_LEN`] bytes, no control characters.
///
/// ```
/// use broadcast_core::target::validate_room;
/// assert!(validate_room("chat|1").is_ok());
/// assert!(validate_room("").is_err());
/// assert!(validate_room("a\nb").is_err());
/// ```
pub fn validate_room(room: &str) -> Result<(), TargetError> {
    validate_name(room, NameKind::Room)
}

/// Checks a namespace: as a room, plus it starts with `/` and holds no `#`, `,` or `?`.
///
/// ```
/// use broadcast_core::target::validate_namespace;
/// assert!(validate_namespace("/admin").is_ok());
/// assert!(validate_namespace("admin").is_err());
/// assert!(validate_namespace("/a#b").is_err());
/// ```
pub fn validate_namespace(ns: &str) -> Result<(), TargetError> {
    validate_name(ns, NameKind::Namespace)?;
    if !ns.starts_with('/') {
        return Err(TargetError::NamespaceWithoutSlash);
    }
    if let Some(c) = ns.chars().find(|c| matches!(c, '#' | ',' | '?')) {
        return Err(TargetError::NamespaceCharacter(c));
    }
    Ok(())
}

/// Anything `broadcast_on` may return: a room string, a typed [`Room`], a
/// [`Target`], or a list, array, `Vec`, `Option` or tuple of those.
///
/// `default_namespace` applies to plain strings; typed rooms and targets carry
/// their own namespace.
///
/// ```
/// use broadcast_core::{IntoTargets, Targets};
/// let mut t = Targets::new();
/// ("chat|1", ["user|7", "user|8"]).into_targets("/", &mut t);
/// assert!(t.contains("/", "user|8"));
/// ```
pub trait IntoTargets {
    /// Adds these targets to `out`.
    fn into_targets(self, default_namespace: &'static str, out: &mut Targets);
}

impl IntoTargets for &'static str {
    fn into_targets(self, ns: &'static str, out: &mut Targets) {
        out.push(ns, self);
    }
}

impl IntoTargets for String {
    fn into_targets(self, ns: &'static str, out: &mut Targets) {
        out.push(ns, self);
    }
}

impl IntoTargets for &String {
    fn into_targets(self, ns: &'static str, out: &mut Targets) {
        out.push(ns, self.clone());
    }
}

impl IntoTargets for Cow<'static, str> {
    fn into_targets(self, ns: &'static str, out: &mut Targets) {
        out.push(ns, self);
    }
}

impl IntoTargets for Target {
    fn into_targets(self, _: &'static str, out: &mut Targets) {
        out.push(self.namespace, self.room);
    }
}

impl IntoTargets for Targets {
    fn into_targets(self, _: &'static str, out: &mut Targets) {
        if out.is_empty() {
            *out = self;
            return;
        }
        for g in self.groups {
            for r in g.rooms {
                out.push(g.namespace.clone(), r);
            }
        }
    }
}

impl<R: Room> IntoTargets for R {
    fn into_targets(self, _: &'static str, out: &mut Targets) {
        out.push(self.namespace(), self.name());
    }
}

impl<T: IntoTargets> IntoTargets for Vec<T> {
    fn into_targets(self, ns: &'static str, out: &mut Targets) {
        for t in self {
            t.into_targets(ns, out);
        }
    }
}

impl<T: IntoTargets, const N: usize> IntoTargets for [T; N] {
    fn into_targets(self, ns: &'static str, out: &mut Targets) {
        for t in self {
            t.into_targets(ns, out);
        }
    }
}

impl<T: IntoTargets + Clone> IntoTargets for &[T] {
    fn into_targets(self, ns: &'static str, out: &mut Targets) {
        for t in self {
            t.clone().into_targets(ns, out);
        }
    }
}

impl<T: IntoTargets> IntoTargets for Option<T> {
    fn into_targets(self, ns: &'static str, out: &mut Targets) {
        if let Some(t) = self {
            t.into_targets(ns, out);
        }
    }
}

macro_rules! tuple_targets {
    ($($name:ident)+) => {
        impl<$($name: IntoTargets),+> IntoTargets for ($($name,)+) {
            #[allow(non_snake_case)]
            fn into_targets(self, ns: &'static str, out: &mut Targets) {
                let ($($name,)+) = self;
                $($name.into_targets(ns, out);)+
            }
        }
    };
}
tuple_targets!(A);
tuple_targets!(A B);
tuple_targets!(A B C);
tuple_targets!(A B C D);
tuple_targets!(A B C D E);
tuple_targets!(A B C D E F);

#[cfg(test)]
mod tests {
    use super::*;

    struct ChatRoom(u64);
    impl Room for ChatRoom {
        fn name(&self) -> Cow<'static, str> {
            format!("chat|{}", self.0).into()
        }
    }
    struct AdminRoom;
    impl Room for AdminRoom {
        fn name(&self) -> Cow<'static, str> {
            "admins".into()
        }
        fn namespace(&self) -> Cow<'static, str> {
            "/admin".into()
        }
    }

    fn collect(t: impl IntoTargets, ns: &'static str) -> Vec<String> {
        let mut out = Targets::new();
        t.into_targets(ns, &mut out);
        out.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn strings_take_the_default_namespace() {
        assert_eq!(collect("a", "/"), ["/#a"]);
        assert_eq!(collect(String::from("a"), "/x"), ["/x#a"]);
    }

    #[test]
    fn typed_rooms_keep_their_namespace() {
        assert_eq!(collect(ChatRoom(5), "/ignored"), ["/#chat|5"]);
        assert_eq!(collect(AdminRoom, "/"), ["/admin#admins"]);
    }

    #[test]
    fn lists_are_flattened_and_deduplicated_in_order() {
        let got = collect(
            (
                vec!["b", "a", "b"],
                ChatRoom(1),
                [ChatRoom(1), ChatRoom(2)],
                AdminRoom,
            ),
            "/",
        );
        assert_eq!(got, ["/#b", "/#a", "/#chat|1", "/#chat|2", "/admin#admins"]);
    }

    #[test]
    fn same_room_in_two_namespaces_is_two_targets() {
        let mut t = Targets::new();
        t.push("/", "r");
        t.push("/x", "r");
        t.push("/", "r");
        assert_eq!(t.len(), 2);
        assert_eq!(t.namespaces().count(), 2);
    }

    #[test]
    fn none_adds_nothing() {
        assert!(collect(None::<&'static str>, "/").is_empty());
        assert!(Targets::new().is_empty());
    }

    #[test]
    fn validation_names_the_bad_target() {
        let mut t = Targets::new();
        t.push("/", "ok");
        t.push("/", "bad\u{7}");
        let (target, err) = t.validate().unwrap_err();
        assert_eq!(target.room, "bad\u{7}");
        assert_eq!(err, TargetError::ControlCharacter(NameKind::Room));

        let mut t = Targets::new();
        t.push("admin", "r");
        assert_eq!(
            t.validate().unwrap_err().1,
            TargetError::NamespaceWithoutSlash
        );
    }

    #[test]
    fn name_rules() {
        assert_eq!(validate_room(""), Err(TargetError::Empty(NameKind::Room)));
        assert!(validate_room(&"x".repeat(MAX_NAME_LEN)).is_ok());
        assert!(matches!(
            validate_room(&"x".repeat(MAX_NAME_LEN + 1)),
            Err(TargetError::TooLong { len: 257, .. })
        ));
        assert!(validate_room("emoji 🎉 and spaces").is_ok());
        assert_eq!(validate_namespace("/"), Ok(()));
        assert_eq!(
            validate_namespace(""),
            Err(TargetError::Empty(NameKind::Namespace))
        );
        assert_eq!(
            validate_namespace("/a#b"),
            Err(TargetError::NamespaceCharacter('#'))
        );
        assert_eq!(
            validate_namespace("/a,b"),
            Err(TargetError::NamespaceCharacter(','))
        );
        assert_eq!(
            validate_namespace("/a\tb"),
            Err(TargetError::ControlCharacter(NameKind::Namespace))
        );
    }
}
