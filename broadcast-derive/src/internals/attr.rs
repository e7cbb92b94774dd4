//! Parses `#[broadcast(...)]` and `#[room(...)]` into plain data: syntax and
//! duplicates only; what the values mean is checked by each derive's
//! `validate`.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::{Expr, LitStr, Token};

use super::ctxt::Ctxt;
use super::symbol::*;

/// One key's slot: remembers where it was first set, so a second setting is
/// reported at its own key.
pub struct Attr<'c, T> {
    cx: &'c Ctxt,
    /// `broadcast` or `room`, for the duplicate message.
    attr: Symbol,
    name: Symbol,
    tokens: TokenStream,
    value: Option<T>,
}

impl<'c, T> Attr<'c, T> {
    fn none(cx: &'c Ctxt, attr: Symbol, name: Symbol) -> Self {
        Attr {
            cx,
            attr,
            name,
            tokens: TokenStream::new(),
            value: None,
        }
    }

    fn set<A: ToTokens>(&mut self, obj: A, value: T) {
        let tokens = obj.into_token_stream();
        if self.value.is_some() {
            let msg = format!("duplicate {} attribute `{}`", self.attr, self.name);
            self.cx.error_spanned_by(tokens, msg);
        } else {
            self.tokens = tokens;
            self.value = Some(value);
        }
    }

    /// Sets a value that parsed, or does nothing when it did not (its error
    /// is already reported).
    fn set_opt<A: ToTokens>(&mut self, obj: A, value: Option<T>) {
        if let Some(value) = value {
            self.set(obj, value);
        }
    }

    fn get(self) -> Option<T> {
        self.value
    }

    fn get_with_tokens(self) -> Option<Keyed<T>> {
        let tokens = self.tokens;
        self.value.map(|value| Keyed { key: tokens, value })
    }
}

/// A flag such as `public`.
struct BoolAttr<'c>(Attr<'c, ()>);

impl<'c> BoolAttr<'c> {
    fn none(cx: &'c Ctxt, attr: Symbol, name: Symbol) -> Self {
        BoolAttr(Attr::none(cx, attr, name))
    }

    fn set_true<A: ToTokens>(&mut self, obj: A) {
        self.0.set(obj, ());
    }

    fn get(&self) -> bool {
        self.0.value.is_some()
    }
}

/// A value with the tokens of its key, for errors about the key itself
/// (`public` and `authorize` together).
pub struct Keyed<T> {
    pub key: TokenStream,
    pub value: T,
}

fn default_crate() -> syn::Path {
    syn::parse_quote!(::broadcast_core)
}

/// `#[broadcast(...)]` of one event type.
pub struct EventAttrs {
    pub on: Option<Expr>,
    pub as_: Option<Expr>,
    pub when: Option<Expr>,
    pub name: Option<LitStr>,
    pub namespace: Option<LitStr>,
    pub payload: Option<syn::Type>,
    pub krate: Option<syn::Path>,
}

impl EventAttrs {
    pub fn from_ast(cx: &Ctxt, attrs: &[syn::Attribute]) -> Self {
        let mut on = Attr::none(cx, BROADCAST, ON);
        let mut as_ = Attr::none(cx, BROADCAST, AS);
        let mut when = Attr::none(cx, BROADCAST, WHEN);
        let mut name = Attr::none(cx, BROADCAST, NAME);
        let mut namespace = Attr::none(cx, BROADCAST, NAMESPACE);
        let mut payload = Attr::none(cx, BROADCAST, PAYLOAD);
        let mut krate = Attr::none(cx, BROADCAST, CRATE);

        for attr in attrs {
            if attr.path() != BROADCAST {
                continue;
            }
            if let syn::Meta::Path(_) = attr.meta {
                cx.error_spanned_by(
                    attr,
                    format!(
                        "expected `#[broadcast(...)]` with one of: {}",
                        list(EVENT_KEYS)
                    ),
                );
                continue;
            }
            let result = attr.parse_nested_meta(|meta| {
                if meta.path == ON {
                    on.set(&meta.path, meta.value()?.parse()?);
                } else if meta.path == AS {
                    as_.set(&meta.path, meta.value()?.parse()?);
                } else if meta.path == WHEN {
                    when.set(&meta.path, meta.value()?.parse()?);
                } else if meta.path == NAME {
                    name.set_opt(&meta.path, lit_str(cx, NAME, &meta)?);
                } else if meta.path == NAMESPACE {
                    namespace.set_opt(&meta.path, lit_str(cx, NAMESPACE, &meta)?);
                } else if meta.path == PAYLOAD {
                    payload.set(&meta.path, meta.value()?.parse()?);
                } else if meta.path == CRATE {
                    krate.set_opt(&meta.path, crate_path(cx, &meta)?);
                } else {
                    unknown(cx, BROADCAST, EVENT_KEYS, &meta)?;
                }
                Ok(())
            });
            if let Err(err) = result {
                cx.syn_error(err);
            }
        }

        EventAttrs {
            on: on.get(),
            as_: as_.get(),
            when: when.get(),
            name: name.get(),
            namespace: namespace.get(),
            payload: payload.get(),
            krate: krate.get(),
        }
    }

    /// Where `broadcast_core` is: needed even when the rest failed, for the
    /// fallback impls.
    pub fn krate(&self) -> syn::Path {
        self.krate.clone().unwrap_or_else(default_crate)
    }
}

/// `#[room(...)]` of one room type.
pub struct RoomAttrs {
    pub key: Option<LitStr>,
    pub namespace: Option<LitStr>,
    pub public: bool,
    pub authorize: Option<Keyed<syn::Path>>,
    pub on_join: Option<syn::Path>,
    pub on_leave: Option<syn::Path>,
    pub history: Option<History>,
    pub presence: bool,
    pub krate: Option<syn::Path>,
}

/// `history`, `history(size = 1000, ttl = "10m")`: what a room keeps for
/// clients that reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    pub size: u32,
    pub ttl_secs: u64,
}

impl History {
    /// What a bare `history` keeps.
    pub const DEFAULT: History = History {
        size: 1000,
        ttl_secs: 600,
    };
}

impl RoomAttrs {
    pub fn from_ast(cx: &Ctxt, attrs: &[syn::Attribute]) -> Self {
        let mut key = Attr::none(cx, ROOM, KEY);
        let mut namespace = Attr::none(cx, ROOM, NAMESPACE);
        let mut public = BoolAttr::none(cx, ROOM, PUBLIC);
        let mut authorize = Attr::none(cx, ROOM, AUTHORIZE);
        let mut on_join = Attr::none(cx, ROOM, ON_JOIN);
        let mut on_leave = Attr::none(cx, ROOM, ON_LEAVE);
        let mut history = Attr::none(cx, ROOM, HISTORY);
        let mut presence = BoolAttr::none(cx, ROOM, PRESENCE);
        let mut krate = Attr::none(cx, ROOM, CRATE);

        for attr in attrs {
            if attr.path() != ROOM {
                continue;
            }
            if let syn::Meta::Path(_) = attr.meta {
                cx.error_spanned_by(
                    attr,
                    format!("expected `#[room(...)]` with some of: {}", list(ROOM_KEYS)),
                );
                continue;
            }
            let result = attr.parse_nested_meta(|meta| {
                if meta.path == KEY {
                    key.set_opt(&meta.path, lit_str(cx, KEY, &meta)?);
                } else if meta.path == NAMESPACE {
                    namespace.set_opt(&meta.path, lit_str(cx, NAMESPACE, &meta)?);
                } else if meta.path == PUBLIC {
                    if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
                        cx.error_spanned_by(
                            &meta.path,
                            "`public` takes no value: write `#[room(public)]`",
                        );
                        skip_value(&meta)?;
                    }
                    public.set_true(&meta.path);
                } else if meta.path == AUTHORIZE {
                    authorize.set_opt(&meta.path, fn_path(cx, AUTHORIZE, &meta)?);
                } else if meta.path == ON_JOIN {
                    on_join.set_opt(&meta.path, fn_path(cx, ON_JOIN, &meta)?);
                } else if meta.path == ON_LEAVE {
                    on_leave.set_opt(&meta.path, fn_path(cx, ON_LEAVE, &meta)?);
                } else if meta.path == HISTORY {
                    history.set_opt(&meta.path, history_attr(cx, &meta)?);
                } else if meta.path == PRESENCE {
                    if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
                        cx.error_spanned_by(
                            &meta.path,
                            "`presence` takes no value: write `#[room(presence)]`",
                        );
                        skip_value(&meta)?;
                    }
                    presence.set_true(&meta.path);
                } else if meta.path == CRATE {
                    krate.set_opt(&meta.path, crate_path(cx, &meta)?);
                } else {
                    unknown(cx, ROOM, ROOM_KEYS, &meta)?;
                }
                Ok(())
            });
            if let Err(err) = result {
                cx.syn_error(err);
            }
        }

        RoomAttrs {
            key: key.get(),
            namespace: namespace.get(),
            public: public.get(),
            authorize: authorize.get_with_tokens(),
            on_join: on_join.get(),
            on_leave: on_leave.get(),
            history: history.get(),
            presence: presence.get(),
            krate: krate.get(),
        }
    }

    /// Where `broadcast_core` is: needed even when the rest failed, for the
    /// fallback impls.
    pub fn krate(&self) -> syn::Path {
        self.krate.clone().unwrap_or_else(default_crate)
    }
}

/// `history` or `history(size = <1..>, ttl = "<n>s|m|h|d">)`; each bad value
/// is reported at its own span and the rest still parsed.
fn history_attr(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<History>> {
    let mut out = History::DEFAULT;
    if meta.input.peek(Token![=]) {
        cx.error_spanned_by(
            &meta.path,
            "`history` takes a list: write `history` or `history(size = 1000, ttl = \"10m\")`",
        );
        skip_value(meta)?;
        return Ok(None);
    }
    if !meta.input.peek(syn::token::Paren) {
        return Ok(Some(out));
    }
    let mut size = Attr::none(cx, HISTORY, SIZE);
    let mut ttl = Attr::none(cx, HISTORY, TTL);
    let mut ok = true;
    meta.parse_nested_meta(|inner| {
        if inner.path == SIZE {
            let lit: syn::LitInt = inner.value()?.parse()?;
            match lit.base10_parse::<u32>() {
                Ok(n) if n > 0 => size.set(&inner.path, n),
                _ => {
                    ok = false;
                    cx.error_spanned_by(&lit, "`size` is a number of events, from 1 to 4294967295");
                }
            }
        } else if inner.path == TTL {
            match lit_str(cx, TTL, &inner)? {
                Some(lit) => match parse_duration(&lit.value()) {
                    Some(secs) => ttl.set(&inner.path, secs),
                    None => {
                        ok = false;
                        cx.error_spanned_by(
                            &lit,
                            "`ttl` is a duration such as \"30s\", \"10m\", \"2h\" or \"1d\" (at least one second)",
                        );
                    }
                },
                None => ok = false,
            }
        } else {
            ok = false;
            unknown(cx, HISTORY, HISTORY_KEYS, &inner)?;
        }
        Ok(())
    })?;
    if let Some(n) = size.get() {
        out.size = n;
    }
    if let Some(secs) = ttl.get() {
        out.ttl_secs = secs;
    }
    Ok(ok.then_some(out))
}

/// `"90s"`, `"10m"`, `"2h"`, `"1d"` in seconds; `None` when malformed, zero
/// or too large.
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(scale).filter(|&s| s > 0)
}

/// Reports an unknown key and skips its value, so one typo does not hide
/// the errors of the keys after it.
fn unknown(cx: &Ctxt, attr: Symbol, keys: &[Symbol], meta: &ParseNestedMeta) -> syn::Result<()> {
    let name = meta.path.to_token_stream().to_string().replace(' ', "");
    cx.error_spanned_by(
        &meta.path,
        format!(
            "unknown {attr} attribute `{name}`; expected one of: {}",
            list(keys)
        ),
    );
    skip_value(meta)
}

/// `key = "..."`. Anything else is reported and parsed past, so the keys
/// after it are still checked.
pub fn lit_str(cx: &Ctxt, key: Symbol, meta: &ParseNestedMeta) -> syn::Result<Option<LitStr>> {
    let expr: Expr = meta.value()?.parse()?;
    match expr {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => Ok(Some(s)),
        other => {
            cx.error_spanned_by(other, format!("`{key}` takes a string literal"));
            Ok(None)
        }
    }
}

/// `crate = "::path::to::broadcast_core"`.
fn crate_path(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<syn::Path>> {
    let Some(lit) = lit_str(cx, CRATE, meta)? else {
        return Ok(None);
    };
    match lit.parse::<syn::Path>() {
        Ok(path) => Ok(Some(path)),
        Err(_) => {
            cx.error_spanned_by(
                &lit,
                "expected a path like `crate = \"::my::broadcast_core\"`",
            );
            Ok(None)
        }
    }
}

/// Consumes `= <anything up to the next top-level comma>` or `(...)` after a
/// bad key.
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
        meta.input.parse::<proc_macro2::Group>()?;
    }
    Ok(())
}

/// `authorize = path`: a function path, not a closure or a call, because
/// the derive calls it with `(&JoinContext, &Self)`.
pub fn fn_path(cx: &Ctxt, key: Symbol, meta: &ParseNestedMeta) -> syn::Result<Option<syn::Path>> {
    let expr: Expr = meta.value()?.parse()?;
    match expr {
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => Ok(Some(p.path)),
        other => {
            cx.error_spanned_by(
                &other,
                format!(
                    "`{key}` takes the path of a function called with `(&JoinContext, &Self)`, e.g. `{key} = my_fn` or `{key} = Self::my_fn`"
                ),
            );
            Ok(None)
        }
    }
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
pub fn tidy(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn errors(cx: Ctxt) -> Vec<String> {
        match cx.check() {
            Ok(()) => Vec::new(),
            Err(err) => err.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn event_attributes() {
        let cx = Ctxt::new();
        let attrs: Vec<syn::Attribute> = vec![
            syn::parse_quote!(#[broadcast(on = "chat|{id}", as = Self::payload)]),
            syn::parse_quote!(#[doc = "not ours"]),
            syn::parse_quote!(#[broadcast(name = "x", namespace = "/a", crate = "::bc")]),
        ];
        let a = EventAttrs::from_ast(&cx, &attrs);
        assert_eq!(errors(cx), Vec::<String>::new());
        assert!(a.on.is_some() && a.as_.is_some() && a.when.is_none());
        assert_eq!(a.name.map(|l| l.value()).as_deref(), Some("x"));
        assert_eq!(a.namespace.map(|l| l.value()).as_deref(), Some("/a"));
        assert_eq!(a.krate.to_token_stream().to_string(), ":: bc");
    }

    #[test]
    fn every_event_mistake_at_once() {
        let cx = Ctxt::new();
        let attrs: Vec<syn::Attribute> = vec![
            syn::parse_quote!(#[broadcast(to = "chat", name = chat, on = "a")]),
            syn::parse_quote!(#[broadcast(on = "b", crate = "not a path", when = f)]),
            syn::parse_quote!(#[broadcast]),
        ];
        let a = EventAttrs::from_ast(&cx, &attrs);
        assert_eq!(
            errors(cx),
            [
                "unknown broadcast attribute `to`; expected one of: on, as, when, name, namespace, payload, crate",
                "`name` takes a string literal",
                "duplicate broadcast attribute `on`",
                "expected a path like `crate = \"::my::broadcast_core\"`",
                "expected `#[broadcast(...)]` with one of: on, as, when, name, namespace, payload, crate",
            ]
        );
        // The first setting wins, and parsing went on after each mistake.
        assert_eq!(a.on.to_token_stream().to_string(), "\"a\"");
        assert!(a.when.is_some());
        assert_eq!(a.krate().to_token_stream().to_string(), ":: broadcast_core");
    }

    #[test]
    fn room_attributes() {
        let cx = Ctxt::new();
        let attrs: Vec<syn::Attribute> = vec![syn::parse_quote!(
            #[room(key = "chat", public, authorize = Self::can, on_join = hi, on_leave = bye)]
        )];
        let a = RoomAttrs::from_ast(&cx, &attrs);
        assert_eq!(errors(cx), Vec::<String>::new());
        assert!(a.public);
        let auth = a.authorize.map(|k| (k.key.to_string(), k.value));
        assert_eq!(
            auth.map(|(k, v)| (k, v.to_token_stream().to_string())),
            Some(("authorize".to_owned(), "Self :: can".to_owned()))
        );
        assert!(a.on_join.is_some() && a.on_leave.is_some());
    }

    #[test]
    fn history_takes_a_size_and_a_ttl() {
        let parse = |attr: syn::Attribute| {
            let cx = Ctxt::new();
            let a = RoomAttrs::from_ast(&cx, &[attr]);
            (a.history, errors(cx))
        };
        assert_eq!(
            parse(syn::parse_quote!(#[room(history)])),
            (Some(History::DEFAULT), vec![])
        );
        assert_eq!(
            parse(syn::parse_quote!(#[room(history(size = 50, ttl = "2h"))])),
            (
                Some(History {
                    size: 50,
                    ttl_secs: 7200
                }),
                vec![]
            )
        );
        assert_eq!(
            parse(syn::parse_quote!(#[room(history(ttl = "30s"))])),
            (
                Some(History {
                    size: 1000,
                    ttl_secs: 30
                }),
                vec![]
            )
        );
        let (h, errs) = parse(syn::parse_quote!(
            #[room(history(size = 0, ttl = "10 minutes", depth = 3, size = 5))]
        ));
        assert_eq!(h, None);
        assert_eq!(
            errs,
            [
                "`size` is a number of events, from 1 to 4294967295",
                "`ttl` is a duration such as \"30s\", \"10m\", \"2h\" or \"1d\" (at least one second)",
                "unknown history attribute `depth`; expected one of: size, ttl",
            ]
        );
        let (h, errs) = parse(syn::parse_quote!(#[room(history = 5)]));
        assert_eq!(h, None);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("1d"), Some(86_400));
        assert_eq!(parse_duration("m"), None);
    }

    #[test]
    fn every_room_mistake_at_once() {
        let cx = Ctxt::new();
        let attrs: Vec<syn::Attribute> = vec![
            syn::parse_quote!(#[room(public = true, namespce = "/x", key = 1)]),
            syn::parse_quote!(#[room(public, authorize = |_, _| true, on_join = f())]),
        ];
        let a = RoomAttrs::from_ast(&cx, &attrs);
        assert_eq!(
            errors(cx),
            [
                "`public` takes no value: write `#[room(public)]`",
                "unknown room attribute `namespce`; expected one of: key, namespace, public, authorize, on_join, on_leave, history, presence, crate",
                "`key` takes a string literal",
                "duplicate room attribute `public`",
                "`authorize` takes the path of a function called with `(&JoinContext, &Self)`, e.g. `authorize = my_fn` or `authorize = Self::my_fn`",
                "`on_join` takes the path of a function called with `(&JoinContext, &Self)`, e.g. `on_join = my_fn` or `on_join = Self::my_fn`",
            ]
        );
        assert!(a.public && a.authorize.is_none() && a.key.is_none());
    }

    #[test]
    fn tidies_source_text() {
        assert_eq!(
            source_text(&quote!(ChatRoom(self.chat.id))),
            "ChatRoom(self.chat.id)"
        );
        assert_eq!(
            source_text(&quote!([Self::rooms(&self), crate::x::Y])),
            "[Self::rooms(&self), crate::x::Y]"
        );
    }
}
