//! Checks `#[room(...)]` against the struct and builds the model the
//! expansion needs. Every problem is reported, each at its span.

use broadcast_rules::{DEFAULT_NAMESPACE, default_room_key, validate_key, validate_namespace};

use crate::internals::ast::{Container, Field, Style};
use crate::internals::attr::{History, RoomAttrs};
use crate::internals::symbol::ROOM;
use crate::internals::{Ctxt, namespace_message};

pub struct Room<'a> {
    pub ident: &'a syn::Ident,
    pub krate: syn::Path,
    pub key: String,
    pub namespace: String,
    pub access: Access,
    pub on_join: Option<syn::Path>,
    pub on_leave: Option<syn::Path>,
    pub history: Option<History>,
    pub presence: bool,
    pub style: Style,
    pub fields: Vec<Field<'a>>,
}

/// Who may join.
pub enum Access {
    /// `public`: any client.
    Public,
    /// `authorize = path`: whom `path` allows.
    Authorize(syn::Path),
    /// Neither: no client; server code joins sockets itself.
    ServerOnly,
}

pub fn room<'a>(cx: &Ctxt, cont: Container<'a>, attrs: RoomAttrs) -> Room<'a> {
    let krate = attrs.krate();

    let key = match &attrs.key {
        Some(lit) => {
            let key = lit.value();
            if let Err(err) = validate_key(&key) {
                cx.error_spanned_by(lit, err);
            }
            key
        }
        None => {
            let key = default_room_key(&cont.ident.to_string());
            if let Err(err) = validate_key(&key) {
                cx.error_spanned_by(
                    cont.ident,
                    format!(
                        "the default room key `{key}` is invalid ({err}); set one with `#[room(key = \"...\")]`"
                    ),
                );
            }
            key
        }
    };

    let namespace = match &attrs.namespace {
        Some(lit) => {
            let ns = lit.value();
            if let Err(err) = validate_namespace(&ns) {
                cx.error_spanned_by(lit, namespace_message(&ns, &err));
            }
            ns
        }
        None => DEFAULT_NAMESPACE.to_owned(),
    };

    let access = match (attrs.public, attrs.authorize) {
        (true, Some(auth)) => {
            cx.error_spanned_by(
                &auth.key,
                "a room is either `public` or has an `authorize` function, not both: remove one",
            );
            Access::Public
        }
        (true, None) => Access::Public,
        (false, Some(auth)) => Access::Authorize(auth.value),
        (false, None) => Access::ServerOnly,
    };

    for field in cont.fields() {
        if let Some(attr) = field.attrs.iter().find(|a| a.path() == ROOM) {
            cx.error_spanned_by(
                attr,
                "`#[room(...)]` goes on the struct; every field is part of the room's identifier",
            );
        }
    }

    let ident = cont.ident;
    let (style, fields) = cont.into_fields();
    Room {
        ident,
        krate,
        key,
        namespace,
        access,
        on_join: attrs.on_join,
        on_leave: attrs.on_leave,
        history: attrs.history,
        presence: attrs.presence,
        style,
        fields,
    }
}
