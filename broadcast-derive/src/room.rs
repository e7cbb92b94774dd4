//! `#[derive(Room)]`: checks the `#[room(...)]` attributes against the type
//! and builds the model the expansion needs. Every problem is reported at
//! once, each at its span.

#[path = "room_attr.rs"]
mod attr;
#[path = "room_expand.rs"]
mod expand;

use proc_macro2::TokenStream;
use syn::{Data, DeriveInput, Fields};

use crate::ctxt::Ctxt;
use crate::naming;
use attr::RoomAttrs;

/// Longest room key accepted (`broadcast_core::join::MAX_KEY_LEN`).
const MAX_KEY_LEN: usize = 64;

pub struct RoomModel<'a> {
    pub input: &'a DeriveInput,
    pub krate: syn::Path,
    pub key: String,
    pub namespace: String,
    pub access: Access,
    pub on_join: Option<syn::Path>,
    pub on_leave: Option<syn::Path>,
    pub shape: Shape,
    pub fields: Vec<Field<'a>>,
}

pub enum Access {
    Public,
    Authorize(syn::Path),
    ServerOnly,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `struct A;`
    Unit,
    /// `struct A {}`
    EmptyBraces,
    /// `struct A()`
    EmptyParens,
    Tuple,
    Named,
}

pub struct Field<'a> {
    pub member: syn::Member,
    pub name: String,
    pub ty: &'a syn::Type,
}

pub fn derive(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::default();
    let attrs = RoomAttrs::parse(&cx, &input.attrs);
    let krate = attrs
        .krate
        .as_ref()
        .map(|a| a.value.clone())
        .unwrap_or_else(|| syn::parse_quote!(::broadcast_core));
    let model = validate(&cx, input, attrs, krate.clone());
    match (cx.check(), model) {
        (Ok(()), Some(model)) => expand::room(&model),
        (Err(err), _) => {
            let mut out = Ctxt::compile_errors(&err);
            out.extend(expand::fallback(input, &krate));
            out
        }
        // `validate` returns a model whenever it reported no error.
        (Ok(()), None) => expand::fallback(input, &krate),
    }
}

fn validate<'a>(
    cx: &Ctxt,
    input: &'a DeriveInput,
    attrs: RoomAttrs,
    krate: syn::Path,
) -> Option<RoomModel<'a>> {
    let fields = match &input.data {
        Data::Struct(s) => Some(&s.fields),
        Data::Enum(e) => {
            cx.error_spanned_by(
                e.enum_token,
                "`Room` can only be derived for structs, whose fields are the room's identifier; not for enums",
            );
            None
        }
        Data::Union(u) => {
            cx.error_spanned_by(
                u.union_token,
                "`Room` can only be derived for structs, not unions",
            );
            None
        }
    };
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(
            &input.generics,
            "`Room` cannot be derived for a generic struct: a room key must name one room type; write the impls by hand",
        );
    }

    let key = match &attrs.key {
        Some(a) => {
            let v = a.value.value();
            if let Err(msg) = check_key(&v) {
                cx.error_spanned_by(&a.value, msg);
            }
            v
        }
        None => {
            let v = naming::strip_suffix(&input.ident.to_string(), "room");
            if let Err(msg) = check_key(&v) {
                cx.error_spanned_by(
                    &input.ident,
                    format!("the default room key `{v}` is invalid ({msg}); set one with `#[room(key = \"...\")]`"),
                );
            }
            v
        }
    };

    let namespace = match &attrs.namespace {
        Some(a) => {
            let v = a.value.value();
            if let Err(msg) = check_namespace(&v) {
                cx.error_spanned_by(&a.value, msg);
            }
            v
        }
        None => "/".to_owned(),
    };

    let access = match (&attrs.public, &attrs.authorize) {
        (Some(_), Some(auth)) => {
            cx.error_spanned_by(
                &auth.key,
                "a room is either `public` or has an `authorize` function, not both: remove one",
            );
            None
        }
        (Some(_), None) => Some(Access::Public),
        (None, Some(auth)) => Some(Access::Authorize(auth.value.clone())),
        (None, None) => Some(Access::ServerOnly),
    };

    let (shape, fields) = match fields {
        Some(f) => field_model(cx, f),
        None => (Shape::Unit, Vec::new()),
    };

    Some(RoomModel {
        input,
        krate,
        key,
        namespace,
        access: access?,
        on_join: attrs.on_join.map(|a| a.value),
        on_leave: attrs.on_leave.map(|a| a.value),
        shape,
        fields,
    })
}

fn field_model<'a>(cx: &Ctxt, fields: &'a Fields) -> (Shape, Vec<Field<'a>>) {
    for f in fields {
        if let Some(attr) = f.attrs.iter().find(|a| a.path().is_ident("room")) {
            cx.error_spanned_by(
                attr,
                "`#[room(...)]` goes on the struct; every field is part of the room's identifier",
            );
        }
    }
    match fields {
        Fields::Unit => (Shape::Unit, Vec::new()),
        Fields::Named(n) if n.named.is_empty() => (Shape::EmptyBraces, Vec::new()),
        Fields::Unnamed(u) if u.unnamed.is_empty() => (Shape::EmptyParens, Vec::new()),
        Fields::Named(n) => {
            let fields = n
                .named
                .iter()
                .filter_map(|f| {
                    let ident = f.ident.clone()?;
                    // `r#type` is named `type` on the wire.
                    let name = ident.to_string().trim_start_matches("r#").to_owned();
                    Some(Field {
                        member: syn::Member::Named(ident),
                        name,
                        ty: &f.ty,
                    })
                })
                .collect();
            (Shape::Named, fields)
        }
        Fields::Unnamed(u) => {
            let fields = u
                .unnamed
                .iter()
                .enumerate()
                .map(|(i, f)| Field {
                    member: syn::Member::from(i),
                    name: i.to_string(),
                    ty: &f.ty,
                })
                .collect();
            (Shape::Tuple, fields)
        }
    }
}

/// Mirrors `broadcast_core::join::validate_key`.
fn check_key(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("a room key cannot be empty".into());
    }
    if v.len() > MAX_KEY_LEN {
        return Err(format!("a room key is at most {MAX_KEY_LEN} bytes"));
    }
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(format!(
            "a room key may only contain ASCII letters, digits, `_`, `-`, `.` and `:`, not {c:?}"
        ));
    }
    Ok(())
}

/// Mirrors `broadcast_core::target::validate_namespace`.
fn check_namespace(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("the namespace cannot be empty".into());
    }
    if v.len() > 256 {
        return Err("the namespace is longer than 256 bytes".into());
    }
    if v.chars().any(char::is_control) {
        return Err("the namespace cannot contain control characters".into());
    }
    if !v.starts_with('/') {
        return Err(format!("a namespace must start with `/`: write `\"/{v}\"`"));
    }
    if let Some(c) = v.chars().find(|c| matches!(c, '#' | ',' | '?')) {
        return Err(format!("a namespace cannot contain `{c}`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(check_key("chat").is_ok());
        assert!(check_key("user_profile").is_ok());
        assert!(check_key("a.b:c-d").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key("chat|1").is_err());
        assert!(check_key("chät").is_err());
        assert!(check_key(&"k".repeat(65)).is_err());
    }

    #[test]
    fn namespaces() {
        assert!(check_namespace("/").is_ok());
        assert!(check_namespace("/admin").is_ok());
        assert!(check_namespace("admin").is_err());
        assert!(check_namespace("/a?b").is_err());
    }
}
