//! `impl Room`, `impl JoinableRoom` and the room's registry entry, from a
//! checked model.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::validate::{Access, Room};
use crate::internals::ast::Style;

pub fn room(m: &Room) -> TokenStream {
    let krate = &m.krate;
    let ident = m.ident;
    let p = quote!(#krate::__private);
    let j = quote!(#krate::join);
    let key = &m.key;
    let namespace = &m.namespace;
    let type_name = ident.to_string();
    let names: Vec<&str> = m.fields.iter().map(|f| f.name.as_str()).collect();

    let name_body = if m.fields.is_empty() {
        quote!(#p::Cow::Borrowed(#key))
    } else {
        // A valid key holds no braces, so it is a plain literal part of the
        // format string.
        let mut fmt = key.clone();
        for _ in &m.fields {
            fmt.push_str("|{}");
        }
        let args = m.fields.iter().map(|f| {
            let member = &f.member;
            quote_spanned!(f.ty.span()=> self.#member)
        });
        quote!(#p::Cow::Owned(#p::format!(#fmt, #(#args),*)))
    };

    let shape = match m.style {
        Style::Unit | Style::EmptyBraces | Style::EmptyParens => quote!(Unit),
        Style::Tuple => quote!(Tuple),
        Style::Named => quote!(Named),
    };
    let gets = m
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| quote_spanned!(f.ty.span()=> __fields.get(#i)?));
    let construct = match m.style {
        Style::Unit => quote!(Self),
        Style::EmptyBraces => quote!(Self {}),
        Style::EmptyParens => quote!(Self()),
        Style::Tuple => quote!(Self(#(#gets),*)),
        Style::Named => {
            let members = m.fields.iter().map(|f| &f.member);
            quote!(Self { #(#members: #gets),* })
        }
    };

    let access = match m.access {
        Access::Public => quote!(Public),
        Access::Authorize(_) => quote!(Authorized),
        Access::ServerOnly => quote!(ServerOnly),
    };
    // A server-only room keeps the trait's `authorize`, which denies.
    let authorize_body = match &m.access {
        Access::Public => Some(quote!(::core::future::ready(#j::Authorization::Allow))),
        Access::Authorize(path) => {
            let call = quote_spanned!(path.span()=> #path(__ctx, __room));
            Some(quote! {
                async move {
                    #[allow(unused_imports)]
                    use #p::{FutureKind as _, ValueKind as _};
                    let __value = #call;
                    let __value = (&__value).__broadcast_future_kind().resolve(__value).await;
                    #j::IntoAuthorization::into_authorization(__value)
                }
            })
        }
        Access::ServerOnly => None,
    };
    let authorize = authorize_body.map(|body| {
        quote! {
            fn authorize(
                __ctx: &#j::JoinContext,
                __room: &Self,
            ) -> impl #p::Future<Output = #j::Authorization> + ::core::marker::Send {
                #body
            }
        }
    });

    let hook = |name: TokenStream, path: &Option<syn::Path>| {
        path.as_ref().map(|path| {
            let call = quote_spanned!(path.span()=> #path(__ctx, __room));
            quote! {
                fn #name(
                    __ctx: &#j::JoinContext,
                    __room: &Self,
                ) -> impl #p::Future<Output = ()> + ::core::marker::Send {
                    async move {
                        #[allow(unused_imports)]
                        use #p::{FutureKind as _, ValueKind as _};
                        let __value = #call;
                        let () = (&__value).__broadcast_future_kind().resolve(__value).await;
                    }
                }
            }
        })
    };
    let on_join = hook(quote!(on_join), &m.on_join);
    let on_leave = hook(quote!(on_leave), &m.on_leave);
    let history = m.history.map(|h| {
        let (size, ttl) = (h.size, h.ttl_secs);
        quote! {
            const HISTORY: #p::Option<#krate::HistoryPolicy> =
                #p::Option::Some(#krate::HistoryPolicy::new(#size, #ttl));
        }
    });
    let presence = m.presence.then(|| {
        quote!(
            const PRESENCE: bool = true;
        )
    });

    quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            #[automatically_derived]
            impl #krate::Room for #ident {
                fn name(&self) -> #p::Cow<'static, str> {
                    #name_body
                }
                fn namespace(&self) -> #p::Cow<'static, str> {
                    #p::Cow::Borrowed(#namespace)
                }
            }

            #[automatically_derived]
            impl #j::JoinableRoom for #ident {
                const KEY: &'static str = #key;
                const NAMESPACE: &'static str = #namespace;
                const ACCESS: #j::Access = #j::Access::#access;
                const FIELDS: &'static [&'static str] = &[#(#names),*];
                #history
                #presence

                fn from_join_data(
                    __data: &#p::Value,
                ) -> #p::Result<Self, #j::RoomDataError> {
                    #[allow(unused_variables)]
                    let __fields = #p::room::FieldValues::new(
                        #key,
                        <Self as #j::JoinableRoom>::FIELDS,
                        #p::room::Shape::#shape,
                        __data,
                    )?;
                    #p::Result::Ok(#construct)
                }

                #authorize
                #on_join
                #on_leave
            }

            #p::inventory::submit! {
                #krate::registry::RoomDescriptor::of::<#ident>(#type_name)
                    .source(::core::module_path!(), ::core::file!(), ::core::line!())
            }
        };
    }
}
