//! `impl BroadcastEvent` and the event's registry entry, from a checked
//! model.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, LitStr};

use super::validate::{Event, OnItem, Part};
use crate::internals::attr::source_text;

pub fn event(ev: &Event) -> TokenStream {
    let krate = &ev.krate;
    let ident = ev.ident;
    let name = &ev.name;
    let p = quote!(#krate::__private);

    let namespace_const = ev.namespace.as_ref().map(|ns| {
        quote! { const NAMESPACE: &'static str = #ns; }
    });

    let on_fn = ev.on.as_ref().map(|items| {
        let body = match items.as_slice() {
            [one] => on_item(one),
            many => {
                let pushes = many.iter().map(|item| {
                    let value = on_item(item);
                    quote! {
                        #krate::IntoTargets::into_targets(
                            #value,
                            <Self as #krate::BroadcastEvent>::NAMESPACE,
                            &mut __targets,
                        );
                    }
                });
                quote! {{
                    let mut __targets = #krate::Targets::new();
                    #(#pushes)*
                    __targets
                }}
            }
        };
        quote! {
            #[allow(clippy::all, unused_braces)]
            fn broadcast_on(&self)
                -> impl #p::Future<Output = impl #krate::IntoTargets> + ::core::marker::Send
            {
                async move { #body }
            }
        }
    });

    let when_fn = ev.when.as_ref().map(|when| {
        let value = call_or_eval(when);
        quote! {
            #[allow(clippy::all, unused_imports)]
            fn broadcast_when(&self) -> impl #p::Future<Output = bool> + ::core::marker::Send {
                async move {
                    use #p::{FutureKind as _, ValueKind as _};
                    let __value = #value;
                    (&__value).__broadcast_future_kind().resolve(__value).await
                }
            }
        }
    });

    let as_body = match &ev.as_ {
        None => quote_spanned! {ident.span()=>
            #p::Result::Ok(self)
        },
        Some(expr) => {
            let value = call_or_eval(expr);
            quote! {
                use #p::{FutureKind as _, ValueKind as _, ResourceKind as _, PlainKind as _};
                let __value = #value;
                let __value = (&__value).__broadcast_future_kind().resolve(__value).await;
                (&__value).__broadcast_payload_kind().resolve(__value).await
            }
        }
    };

    let templates: Vec<String> = ev
        .on
        .iter()
        .flatten()
        .map(|item| match item {
            OnItem::Template { lit, .. } => lit.value(),
            OnItem::Expr(e) => source_text(e),
        })
        .collect();
    let payload = match &ev.as_ {
        None => ident.to_string(),
        Some(e) => source_text(e),
    };
    let type_name = ident.to_string();
    let schema = match &ev.payload_ty {
        Some(ty) => {
            // `Self` is not in scope outside the impl.
            let ty = if matches!(ty, syn::Type::Path(p) if p.path.is_ident("Self")) {
                quote!(#ident)
            } else {
                quote!(#ty)
            };
            quote! {{
                fn __broadcast_payload_schema() -> #p::Option<#p::Value> {
                    #[allow(unused_imports)]
                    use #p::{NoSchemaKind as _, SchemaKind as _};
                    (&#p::SchemaProbe::<#ty>::new()).__broadcast_schema()
                }
                __broadcast_payload_schema
            }}
        }
        None => quote!(#p::no_schema),
    };

    quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            #[automatically_derived]
            impl #krate::BroadcastEvent for #ident {
                const NAME: &'static str = #name;
                #namespace_const
                #on_fn
                #when_fn
                #[allow(clippy::all, unused_imports)]
                fn broadcast_as(&self) -> impl #p::Future<
                    Output = #p::Result<impl #p::Serialize, #krate::PayloadError>
                > + ::core::marker::Send {
                    async move { #as_body }
                }
            }

            #p::inventory::submit! {
                #krate::registry::EventDescriptor::new(
                    #name,
                    #type_name,
                    <#ident as #krate::BroadcastEvent>::NAMESPACE,
                )
                .rooms(&[#(#templates),*])
                .payload(#payload)
                .payload_schema(#schema)
                .source(::core::module_path!(), ::core::file!(), ::core::line!())
            }
        };
    }
}

/// `path` -> `path(self)`; any other expression as written (it may use
/// `self` and `.await`).
fn call_or_eval(expr: &Expr) -> TokenStream {
    match expr {
        Expr::Path(p) if p.qself.is_none() && !p.path.is_ident("self") => {
            quote_spanned! {expr.span()=> #expr(self) }
        }
        other => quote!((#other)),
    }
}

fn on_item(item: &OnItem) -> TokenStream {
    match item {
        OnItem::Expr(e) => quote!((#e)),
        OnItem::Template { lit, parts } => template(lit, parts),
    }
}

/// A template without fields is a `&'static str` (no allocation); one with
/// fields is a single `format!`.
fn template(lit: &LitStr, parts: &[Part]) -> TokenStream {
    if parts.iter().all(|p| matches!(p, Part::Text(_))) {
        let text: String = parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.as_str(),
                Part::Field { .. } => "",
            })
            .collect();
        return quote_spanned! {lit.span()=> #text };
    }
    let mut fmt = String::new();
    let mut args = Vec::new();
    for part in parts {
        match part {
            Part::Text(t) => fmt.push_str(&t.replace('{', "{{").replace('}', "}}")),
            Part::Field { member, rest } => {
                fmt.push_str("{}");
                let rest = rest.iter().map(|s| match s.parse::<u32>() {
                    Ok(i) => {
                        let index = syn::Index {
                            index: i,
                            span: lit.span(),
                        };
                        quote!(#index)
                    }
                    Err(_) => {
                        let id = format_ident!("{}", s, span = lit.span());
                        quote!(#id)
                    }
                });
                let member = respan(member, lit.span());
                args.push(quote_spanned! {lit.span()=> self.#member #(.#rest)* });
            }
        }
    }
    quote_spanned! {lit.span()=> ::std::format!(#fmt, #(#args),*) }
}

/// The field at the template's span, so a field that is not `Display` is
/// reported there.
fn respan(member: &syn::Member, span: proc_macro2::Span) -> syn::Member {
    match member {
        syn::Member::Named(ident) => {
            let mut ident = ident.clone();
            ident.set_span(span);
            syn::Member::Named(ident)
        }
        syn::Member::Unnamed(index) => syn::Member::Unnamed(syn::Index {
            index: index.index,
            span,
        }),
    }
}
