//! Checks the parsed attributes against the type and turns them into the
//! model the expansion needs. Every problem is reported, each at its span.

use syn::{Data, DeriveInput, Expr, Fields, LitStr};

use crate::attr::EventAttrs;
use crate::ctxt::Ctxt;
use crate::naming;
use crate::template::{self, Piece};

pub struct Event<'a> {
    pub input: &'a DeriveInput,
    pub krate: syn::Path,
    pub name: String,
    pub namespace: Option<String>,
    pub on: Option<Vec<OnItem>>,
    pub as_: Option<Expr>,
    pub when: Option<Expr>,
    /// The payload type, for its schema: `Self` without `as`, else what
    /// `payload = Type` names (unknown otherwise).
    pub payload_ty: Option<syn::Type>,
}

pub enum OnItem {
    Template { lit: LitStr, pieces: Vec<Piece> },
    Expr(Expr),
}

pub fn event<'a>(cx: &Ctxt, input: &'a DeriveInput, attrs: EventAttrs) -> Event<'a> {
    let fields = match &input.data {
        Data::Struct(s) => Some(&s.fields),
        Data::Enum(e) => {
            cx.error_spanned_by(
                e.enum_token,
                "`BroadcastEvent` can only be derived for structs, not enums; wrap the enum in a struct",
            );
            None
        }
        Data::Union(u) => {
            cx.error_spanned_by(
                u.union_token,
                "`BroadcastEvent` can only be derived for structs, not unions",
            );
            None
        }
    };
    if let Some(param) = input.generics.params.first() {
        cx.error_spanned_by(
            &input.generics,
            format!(
                "`BroadcastEvent` cannot be derived for a generic struct (`{}`): an event name must name one payload type; write the impl by hand",
                quote::quote!(#param)
            ),
        );
    }

    let krate = attrs
        .krate
        .map(|a| a.value)
        .unwrap_or_else(|| syn::parse_quote!(::broadcast_core));

    let name = match attrs.name {
        Some(a) => {
            let v = a.value.value();
            if let Err(msg) = check_name(&v, "event name") {
                cx.error_spanned_by(&a.value, msg);
            }
            v
        }
        None => naming::strip_suffix(&input.ident.to_string(), "event"),
    };

    let namespace = attrs.namespace.map(|a| {
        let v = a.value.value();
        if let Err(msg) = check_namespace(&v) {
            cx.error_spanned_by(&a.value, msg);
        }
        v
    });

    let on = attrs.on.map(|a| {
        let items: Vec<Expr> = match a.value {
            Expr::Array(arr) => {
                if arr.elems.is_empty() {
                    cx.error_spanned_by(
                        &arr,
                        "`on = []` names no room; remove `on` to use the default room",
                    );
                }
                arr.elems.into_iter().collect()
            }
            other => vec![other],
        };
        items
            .into_iter()
            .map(|e| match e {
                Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(lit),
                    ..
                }) => {
                    let pieces = check_template(cx, &lit, fields);
                    OnItem::Template { lit, pieces }
                }
                other => OnItem::Expr(other),
            })
            .collect()
    });

    let payload_ty = match (&attrs.as_, attrs.payload) {
        (_, Some(p)) => Some(p.value),
        (None, None) => Some(syn::parse_quote!(Self)),
        (Some(_), None) => None,
    };
    Event {
        input,
        krate,
        name,
        namespace,
        on,
        as_: attrs.as_.map(|a| a.value),
        when: attrs.when.map(|a| a.value),
        payload_ty,
    }
}

fn check_name(v: &str, what: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err(format!("the {what} cannot be empty"));
    }
    if v.len() > 256 {
        return Err(format!("the {what} is longer than 256 bytes"));
    }
    if v.chars().any(char::is_control) {
        return Err(format!("the {what} cannot contain control characters"));
    }
    Ok(())
}

fn check_namespace(v: &str) -> Result<(), String> {
    check_name(v, "namespace")?;
    if !v.starts_with('/') {
        return Err(format!("a namespace must start with `/`: write `\"/{v}\"`"));
    }
    if let Some(c) = v.chars().find(|c| matches!(c, '#' | ',' | '?')) {
        return Err(format!("a namespace cannot contain `{c}`"));
    }
    Ok(())
}

fn check_template(cx: &Ctxt, lit: &LitStr, fields: Option<&Fields>) -> Vec<Piece> {
    let pieces = match template::parse(&lit.value()) {
        Ok(p) => p,
        Err(msg) => {
            cx.error_spanned_by(lit, msg);
            return Vec::new();
        }
    };
    let mut fixed_len = 0;
    for piece in &pieces {
        match piece {
            Piece::Text(t) => {
                fixed_len += t.len();
                if t.chars().any(char::is_control) {
                    cx.error_spanned_by(lit, "a room name cannot contain control characters");
                }
            }
            Piece::Field(path) => {
                if let Some(fields) = fields {
                    check_field(cx, lit, fields, &path[0]);
                }
            }
        }
    }
    if pieces.is_empty() {
        cx.error_spanned_by(lit, "a room name cannot be empty");
    } else if fixed_len > 256 {
        cx.error_spanned_by(lit, "a room name is at most 256 bytes");
    }
    pieces
}

fn check_field(cx: &Ctxt, lit: &LitStr, fields: &Fields, first: &str) {
    let known: Vec<String> = match fields {
        Fields::Named(n) => n
            .named
            .iter()
            .filter_map(|f| f.ident.as_ref().map(|i| i.to_string()))
            .collect(),
        Fields::Unnamed(u) => (0..u.unnamed.len()).map(|i| i.to_string()).collect(),
        Fields::Unit => Vec::new(),
    };
    if !known.iter().any(|k| k == first) {
        let list = if known.is_empty() {
            "it has no fields".to_string()
        } else {
            format!("its fields are: {}", known.join(", "))
        };
        cx.error_spanned_by(
            lit,
            format!(
                "room template refers to `{first}`, which is not a field of this struct; {list}"
            ),
        );
    }
}
