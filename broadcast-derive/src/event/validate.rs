//! Checks `#[broadcast(...)]` against the struct and builds the model the
//! expansion needs. Every problem is reported, each at its span.

use broadcast_rules::protocol::reserved;
use broadcast_rules::{
    MAX_NAME_LEN, default_event_name, validate_event_name, validate_namespace, validate_room,
};
use syn::{Expr, LitStr};

use crate::internals::ast::{Container, Field};
use crate::internals::attr::EventAttrs;
use crate::internals::template::{self, Piece};
use crate::internals::{Ctxt, namespace_message};

pub struct Event<'a> {
    pub ident: &'a syn::Ident,
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
    Template { lit: LitStr, parts: Vec<Part> },
    Expr(Expr),
}

/// A piece of a checked room template.
pub enum Part {
    Text(String),
    /// `{chat.id}`: the field `chat` (as the code reaches it, `r#` and all),
    /// then `id`.
    Field {
        member: syn::Member,
        rest: Vec<String>,
    },
}

pub fn event<'a>(cx: &Ctxt, cont: Container<'a>, attrs: EventAttrs) -> Event<'a> {
    let krate = attrs.krate();
    let hint = "pick another with `#[broadcast(name = \"...\")]`";
    let name = match attrs.name {
        Some(lit) => {
            let name = lit.value();
            if let Err(err) = validate_event_name(&name) {
                cx.error_spanned_by(&lit, err);
            } else if let Some(why) = reserved(&name) {
                cx.error_spanned_by(
                    &lit,
                    format!("event name `{name}` is reserved: {why}; {hint}"),
                );
            }
            name
        }
        None => {
            let name = default_event_name(&cont.ident.to_string());
            if let Err(err) = validate_event_name(&name) {
                cx.error_spanned_by(
                    cont.ident,
                    format!(
                        "the default event name `{name}` is invalid ({err}); set one with `#[broadcast(name = \"...\")]`"
                    ),
                );
            } else if let Some(why) = reserved(&name) {
                cx.error_spanned_by(
                    cont.ident,
                    format!("the default event name `{name}` is reserved: {why}; {hint}"),
                );
            }
            name
        }
    };

    let namespace = attrs.namespace.map(|lit| {
        let ns = lit.value();
        if let Err(err) = validate_namespace(&ns) {
            cx.error_spanned_by(&lit, namespace_message(&ns, &err));
        }
        ns
    });

    let on = attrs.on.map(|on| {
        let items: Vec<Expr> = match on {
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
                    let parts = check_template(cx, &lit, cont.fields());
                    OnItem::Template { lit, parts }
                }
                other => OnItem::Expr(other),
            })
            .collect()
    });

    let payload_ty = match (&attrs.as_, attrs.payload) {
        (_, Some(ty)) => Some(ty),
        (None, None) => Some(syn::parse_quote!(Self)),
        (Some(_), None) => None,
    };
    Event {
        ident: cont.ident,
        krate,
        name,
        namespace,
        on,
        as_: attrs.as_,
        when: attrs.when,
        payload_ty,
    }
}

/// The template's pieces with each field resolved, or nothing when it is
/// wrong (reported).
fn check_template(cx: &Ctxt, lit: &LitStr, fields: &[Field]) -> Vec<Part> {
    let pieces = match template::parse(&lit.value()) {
        Ok(pieces) => pieces,
        Err(msg) => {
            cx.error_spanned_by(lit, msg);
            return Vec::new();
        }
    };
    let fixed: String = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Text(t) => Some(t.as_str()),
            Piece::Field(_) => None,
        })
        .collect();
    let has_fields = pieces.iter().any(|p| matches!(p, Piece::Field(_)));
    // With fields the name is only known at run time (where the runtime
    // checks it); its fixed text alone can already be too long or hold a
    // control character.
    if has_fields && fixed.len() > MAX_NAME_LEN {
        cx.error_spanned_by(
            lit,
            format!(
                "the fixed text of this room template is {} bytes long, more than the {MAX_NAME_LEN} a room name may have",
                fixed.len()
            ),
        );
    } else if (!has_fields || !fixed.is_empty())
        && let Err(err) = validate_room(&fixed)
    {
        cx.error_spanned_by(lit, err);
    }

    let mut parts = Vec::with_capacity(pieces.len());
    for piece in pieces {
        match piece {
            Piece::Text(t) => parts.push(Part::Text(t)),
            Piece::Field(path) => {
                let Some((first, rest)) = path.split_first() else {
                    continue;
                };
                match fields.iter().find(|f| &f.name == first) {
                    Some(field) => parts.push(Part::Field {
                        member: field.member.clone(),
                        rest: rest.to_vec(),
                    }),
                    None => {
                        let list = if fields.is_empty() {
                            "it has no fields".to_owned()
                        } else {
                            let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
                            format!("its fields are: {}", names.join(", "))
                        };
                        cx.error_spanned_by(
                            lit,
                            format!(
                                "room template refers to `{first}`, which is not a field of this struct; {list}"
                            ),
                        );
                    }
                }
            }
        }
    }
    parts
}
