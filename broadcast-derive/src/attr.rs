//! Parses `#[broadcast(...)]` into plain data; no validation beyond syntax.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::{Expr, LitStr, Token};

use crate::ctxt::Ctxt;

/// One attribute's value.
pub struct Attr<T> {
    pub value: T,
}

#[derive(Default)]
pub struct EventAttrs {
    pub on: Option<Attr<Expr>>,
    pub as_: Option<Attr<Expr>>,
    pub when: Option<Attr<Expr>>,
    pub name: Option<Attr<LitStr>>,
    pub namespace: Option<Attr<LitStr>>,
    pub krate: Option<Attr<syn::Path>>,
    pub payload: Option<Attr<syn::Type>>,
}

const KEYS: &str = "on, as, when, name, namespace, payload, crate";

impl EventAttrs {
    pub fn parse(cx: &Ctxt, attrs: &[syn::Attribute]) -> Self {
        let mut out = EventAttrs::default();
        for attr in attrs.iter().filter(|a| a.path().is_ident("broadcast")) {
            if let syn::Meta::Path(_) = attr.meta {
                cx.error_spanned_by(
                    attr,
                    format!("expected `#[broadcast(...)]` with one of: {KEYS}"),
                );
                continue;
            }
            let result = attr.parse_nested_meta(|meta| {
                let key = meta.path.clone();
                let ident = key_name(&key);
                match ident.as_str() {
                    "on" => set(cx, &mut out.on, key, meta.value()?.parse()?),
                    "as" => set(cx, &mut out.as_, key, meta.value()?.parse()?),
                    "when" => set(cx, &mut out.when, key, meta.value()?.parse()?),
                    "name" => set(cx, &mut out.name, key, lit_str(&meta)?),
                    "namespace" => set(cx, &mut out.namespace, key, lit_str(&meta)?),
                    "payload" => set(cx, &mut out.payload, key, meta.value()?.parse()?),
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
                    _ => {
                        cx.error_spanned_by(
                            &key,
                            format!(
                                "unknown broadcast attribute `{ident}`; expected one of: {KEYS}"
                            ),
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

fn set<T>(cx: &Ctxt, slot: &mut Option<Attr<T>>, key: syn::Path, value: T) {
    if slot.is_some() {
        let name = key_name(&key);
        cx.error_spanned_by(&key, format!("duplicate broadcast attribute `{name}`"));
    } else {
        *slot = Some(Attr { value });
    }
}

pub fn key_name(path: &syn::Path) -> String {
    path.to_token_stream().to_string().replace(' ', "")
}

pub fn lit_str(meta: &ParseNestedMeta) -> syn::Result<LitStr> {
    let value = meta.value()?;
    let expr: Expr = value.parse()?;
    match expr {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => Ok(s),
        other => Err(syn::Error::new_spanned(
            other,
            format!("`{}` takes a string literal", key_name(&meta.path)),
        )),
    }
}

/// Consumes `= <anything up to the next top-level comma>` after a bad key,
/// so one mistake does not hide the errors of the keys after it. Shared by
/// both derives.
pub fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.input.parse::<Token![=]>()?;
        meta.input.step(|cursor| {
            let mut rest = *cursor;
            while let Some((tt, next)) = rest.token_tree() {
                if let proc_macro2::TokenTree::Punct(p) = &tt
                    && p.as_char() == ','
                {
                    break;
                }
                rest = next;
            }
            Ok(((), rest))
        })?;
    } else if meta.input.peek(syn::token::Paren) {
        let _: TokenStream = meta.input.parse::<proc_macro2::Group>()?.stream();
    }
    Ok(())
}

/// The source text of an expression, for the registry (`ChatRoom(self.id)`).
pub fn source_text(expr: &impl ToTokens) -> String {
    let tokens = expr.to_token_stream();
    let span: Span = tokens
        .clone()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |t| t.span());
    // Joined spans give the exact text where the compiler supports it.
    let joined = tokens
        .clone()
        .into_iter()
        .last()
        .and_then(|last| span.join(last.span()))
        .and_then(|s| s.source_text());
    joined.unwrap_or_else(|| tidy(&tokens.to_string()))
}

/// Removes the spaces `to_string` puts around punctuation.
fn tidy(s: &str) -> String {
    let mut out = s.to_string();
    for (from, to) in [
        (" :: ", "::"),
        (":: ", "::"),
        (" . ", "."),
        (" (", "("),
        ("( ", "("),
        (" )", ")"),
        ("& ", "&"),
        (" ,", ","),
        (" [", "["),
        ("[ ", "["),
        (" ]", "]"),
        (" ?", "?"),
        ("! (", "!("),
        (" : ", ": "),
        (" ;", ";"),
    ] {
        out = out.replace(from, to);
    }
    out
}
