//! A typed model of the derive input (serde_derive's `Container`). Both
//! derives take only non-generic structs; anything else is refused here,
//! once, so neither derive checks it again.

use quote::quote;
use syn::{Data as SynData, DeriveInput, Fields};

use super::ctxt::Ctxt;

/// Which derive is reading the input, for its messages.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Derive {
    Event,
    Room,
}

pub struct Container<'a> {
    pub ident: &'a syn::Ident,
    pub data: Data<'a>,
}

pub enum Data<'a> {
    Struct(Style, Vec<Field<'a>>),
}

/// How a struct declares its fields; a room rebuilds itself in the same
/// shape.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Style {
    /// `struct A;`
    Unit,
    /// `struct A {}`
    EmptyBraces,
    /// `struct A()`
    EmptyParens,
    /// `struct A(u64, String);`
    Tuple,
    /// `struct A { id: u64 }`
    Named,
}

pub struct Field<'a> {
    /// How the code reaches it: `self.r#type`, `self.0`.
    pub member: syn::Member,
    /// How users and clients name it: `type`, `0`.
    pub name: String,
    pub ty: &'a syn::Type,
    pub attrs: &'a [syn::Attribute],
}

impl<'a> Container<'a> {
    /// The struct, or `None` (reported) for an enum or a union. A generic
    /// struct is reported but still returned, so the errors of its
    /// attributes are reported too.
    pub fn from_ast(cx: &Ctxt, input: &'a DeriveInput, derive: Derive) -> Option<Self> {
        let data = match &input.data {
            SynData::Struct(s) => {
                let (style, fields) = struct_from_ast(&s.fields);
                Data::Struct(style, fields)
            }
            SynData::Enum(e) => {
                cx.error_spanned_by(e.enum_token, derive.not_for_enums());
                return None;
            }
            SynData::Union(u) => {
                cx.error_spanned_by(u.union_token, derive.not_for_unions());
                return None;
            }
        };
        if let Some(param) = input.generics.params.first() {
            cx.error_spanned_by(&input.generics, derive.not_generic(param));
        }
        Some(Container {
            ident: &input.ident,
            data,
        })
    }

    pub fn fields(&self) -> &[Field<'a>] {
        let Data::Struct(_, fields) = &self.data;
        fields
    }

    pub fn into_fields(self) -> (Style, Vec<Field<'a>>) {
        let Data::Struct(style, fields) = self.data;
        (style, fields)
    }
}

impl Derive {
    fn not_for_enums(self) -> &'static str {
        match self {
            Derive::Event => {
                "`BroadcastEvent` can only be derived for structs, not enums; wrap the enum in a struct"
            }
            Derive::Room => {
                "`Room` can only be derived for structs, whose fields are the room's identifier; not for enums"
            }
        }
    }

    fn not_for_unions(self) -> &'static str {
        match self {
            Derive::Event => "`BroadcastEvent` can only be derived for structs, not unions",
            Derive::Room => "`Room` can only be derived for structs, not unions",
        }
    }

    fn not_generic(self, first: &syn::GenericParam) -> String {
        match self {
            Derive::Event => format!(
                "`BroadcastEvent` cannot be derived for a generic struct (`{}`): an event name must name one payload type; write the impl by hand",
                quote!(#first)
            ),
            Derive::Room => "`Room` cannot be derived for a generic struct: a room key must name one room type; write the impls by hand".to_owned(),
        }
    }
}

fn struct_from_ast(fields: &Fields) -> (Style, Vec<Field<'_>>) {
    match fields {
        Fields::Unit => (Style::Unit, Vec::new()),
        Fields::Named(n) if n.named.is_empty() => (Style::EmptyBraces, Vec::new()),
        Fields::Unnamed(u) if u.unnamed.is_empty() => (Style::EmptyParens, Vec::new()),
        Fields::Named(n) => {
            let fields = n
                .named
                .iter()
                .filter_map(|f| {
                    let ident = f.ident.clone()?;
                    // `r#type` is `type` on the wire and in templates.
                    let name = ident.to_string().trim_start_matches("r#").to_owned();
                    Some(Field {
                        member: syn::Member::Named(ident),
                        name,
                        ty: &f.ty,
                        attrs: &f.attrs,
                    })
                })
                .collect();
            (Style::Named, fields)
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
                    attrs: &f.attrs,
                })
                .collect();
            (Style::Tuple, fields)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(cx: Ctxt) -> Vec<String> {
        match cx.check() {
            Ok(()) => Vec::new(),
            Err(err) => err.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn styles_and_wire_names() {
        let cases: [(DeriveInput, Style, &[&str]); 5] = [
            (
                syn::parse_quote!(
                    struct A;
                ),
                Style::Unit,
                &[],
            ),
            (
                syn::parse_quote!(
                    struct A {}
                ),
                Style::EmptyBraces,
                &[],
            ),
            (
                syn::parse_quote!(
                    struct A();
                ),
                Style::EmptyParens,
                &[],
            ),
            (
                syn::parse_quote!(
                    struct A(u64, String);
                ),
                Style::Tuple,
                &["0", "1"],
            ),
            (
                syn::parse_quote!(
                    struct A {
                        id: u64,
                        r#type: String,
                    }
                ),
                Style::Named,
                &["id", "type"],
            ),
        ];
        for (input, style, names) in &cases {
            let cx = Ctxt::new();
            let c = Container::from_ast(&cx, input, Derive::Room);
            assert_eq!(messages(cx), Vec::<String>::new());
            let (got_style, fields) = c.unwrap().into_fields();
            assert_eq!(got_style, *style);
            let got: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
            assert_eq!(got, *names);
        }
    }

    #[test]
    fn raw_field_keeps_its_member() {
        let input: DeriveInput = syn::parse_quote!(
            struct A {
                r#type: String,
            }
        );
        let cx = Ctxt::new();
        let c = Container::from_ast(&cx, &input, Derive::Event);
        cx.check().unwrap();
        let (_, fields) = c.unwrap().into_fields();
        let member = &fields[0].member;
        assert_eq!(quote!(#member).to_string(), "r#type");
    }

    #[test]
    fn refuses_enums_unions_and_generics_once() {
        let en: DeriveInput = syn::parse_quote!(
            enum E {
                A,
            }
        );
        let un: DeriveInput = syn::parse_quote!(union U { a: u32 });
        let generic: DeriveInput = syn::parse_quote!(
            struct G<T> {
                t: T,
            }
        );
        for derive in [Derive::Event, Derive::Room] {
            for input in [&en, &un] {
                let cx = Ctxt::new();
                assert!(Container::from_ast(&cx, input, derive).is_none());
                assert_eq!(messages(cx).len(), 1);
            }
            let cx = Ctxt::new();
            assert!(Container::from_ast(&cx, &generic, derive).is_some());
            assert_eq!(messages(cx).len(), 1);
        }
        let cx = Ctxt::new();
        Container::from_ast(&cx, &generic, Derive::Event);
        assert_eq!(
            messages(cx),
            [
                "`BroadcastEvent` cannot be derived for a generic struct (`T`): an event name must name one payload type; write the impl by hand"
            ]
        );
    }
}
