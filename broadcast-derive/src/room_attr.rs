//! Parses `#[room(...)]` into plain data; no validation beyond syntax.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::{Expr, LitStr, Token};

use crate::attr::{key_name, lit_str, skip_value};
use crate::ctxt::Ctxt;

/// An attribute's key (for error spans) and value.
pub struct Keyed<T> {
    pub key: syn::Path,
    pub value: T,
}

#[derive(Default)]
pub struct RoomAttrs {
    pub key: Option<Keyed<LitStr>>,
    pub namespace: Option<Keyed<LitStr>>,
    pub public: Option<Keyed<()>>,
    pub authorize: Option<Keyed<syn::Path>>,
    pub on_join: Option<Keyed<syn::Path>>,
    pub on_leave: Option<Keyed<syn::Path>>,
    pub krate: Option<Keyed<syn::Path>>,
    /// The first `#[room(...)]`, where an error about a missing key goes.
    pub first: Option<TokenStream>,
}

pub const KEYS: &str = "key, namespace, public, authorize, on_join, on_leave, crate";

impl RoomAttrs {
    pub fn parse(cx: &Ctxt, attrs: &[syn::Attribute]) -> Self {
        let mut out = RoomAttrs::default();
        for attr in attrs.iter().filter(|a| a.path().is_ident("room")) {
            if out.first.is_none() {
                out.first = Some(attr.to_token_stream());
            }
            if let syn::Meta::Path(_) = attr.meta {
                cx.error_spanned_by(
                    attr,
                    format!("expected `#[room(...)]` with some of: {KEYS}"),
                );
                continue;
            }
            let result = attr.parse_nested_meta(|meta| {
                let key = meta.path.clone();
                match key_name(&key).as_str() {
                    "key" => {
                        let v = lit_str(&meta)?;
                        set(cx, &mut out.key, key, v);
                    }
                    "namespace" => {
                        let v = lit_str(&meta)?;
                        set(cx, &mut out.namespace, key, v);
                    }
                    "public" => {
                        if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
                            cx.error_spanned_by(
                                &key,
                                "`public` takes no value: write `#[room(public)]`",
                            );
                            skip_value(&meta)?;
                        }
                        set(cx, &mut out.public, key, ());
                    }
                    "authorize" => {
                        let v = fn_path(cx, &meta)?;
                        set_some(cx, &mut out.authorize, key, v);
                    }
                    "on_join" => {
                        let v = fn_path(cx, &meta)?;
                        set_some(cx, &mut out.on_join, key, v);
                    }
                    "on_leave" => {
                        let v = fn_path(cx, &meta)?;
                        set_some(cx, &mut out.on_leave, key, v);
                    }
                    "crate" => {
                        let lit = lit_str(&meta)?;
                        match lit.parse::<syn::Path>() {
                            Ok(path) => set(cx, &mut out.krate, key, path),
                            Err(_) => cx.error_spanned_by(
                                &lit,
                                "expected a path like `crate = \"::my::broadcast_core\"`",
                            ),
                        }
                    }
                    other => {
                        cx.error_spanned_by(
                            &key,
                            format!("unknown room attribute `{other}`; expected one of: {KEYS}"),
                        );
                        skip_value(&meta)?;
                    }
                }
                Ok(())
            });
            if let Err(e) = result {
                cx.syn_error(e);
            }
        }
        out
    }
}

fn set<T>(cx: &Ctxt, slot: &mut Option<Keyed<T>>, key: syn::Path, value: T) {
    if slot.is_some() {
        let name = key_name(&key);
        cx.error_spanned_by(&key, format!("duplicate room attribute `{name}`"));
    } else {
        *slot = Some(Keyed { key, value });
    }
}

fn set_some<T>(cx: &Ctxt, slot: &mut Option<Keyed<T>>, key: syn::Path, value: Option<T>) {
    if let Some(value) = value {
        set(cx, slot, key, value);
    }
}

/// `authorize = path`: a function path, not a closure or a call, because
/// the derive calls it with `(&JoinContext, &Self)`.
fn fn_path(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<syn::Path>> {
    let name = key_name(&meta.path);
    let expr: Expr = meta.value()?.parse()?;
    match expr {
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => Ok(Some(p.path)),
        other => {
            cx.error_spanned_by(
                &other,
                format!(
                    "`{name}` takes the path of a function called with `(&JoinContext, &Self)`, e.g. `{name} = my_fn` or `{name} = Self::my_fn`"
                ),
            );
            Ok(None)
        }
    }
}
