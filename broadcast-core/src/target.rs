//! Targets: the `(namespace, room)` pairs an event is delivered to.
//!
//! `broadcast_on` may return a room string, a typed [`Room`](crate::Room), or a list of
//! either; [`IntoTargets`] normalizes all of them into one [`Targets`] set,
//! grouped by namespace and deduplicated, so a transport can deliver each
//! namespace with a single emit.

use std::borrow::Cow;
use std::fmt;

use broadcast_rules::{NameError, validate_namespace, validate_room};

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
    pub fn validate(&self) -> Result<(), (Target, NameError)> {
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

/// Anything `broadcast_on` may return: a room string, a typed [`Room`](crate::Room), a
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
    use broadcast_rules::NameKind;

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
    fn lists_are_flattened_and_deduplicated_in_order() {
        let got = collect(
            (
                vec!["b", "a", "b"],
                Target::new("/admin", "admins"),
                ["c", "a"],
            ),
            "/",
        );
        assert_eq!(got, ["/#b", "/#a", "/#c", "/admin#admins"]);
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
        assert_eq!(err, NameError::ControlCharacter(NameKind::Room));

        let mut t = Targets::new();
        t.push("admin", "r");
        assert_eq!(
            t.validate().unwrap_err().1,
            NameError::NamespaceWithoutSlash
        );
    }
}
