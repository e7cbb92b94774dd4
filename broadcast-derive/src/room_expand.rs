//! Generates `Room`, `JoinableRoom` and the two registry entries of a room.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::{Access, RoomModel, Shape};

pub fn room(m: &RoomModel) -> TokenStream {
    let krate = &m.krate;
    let ident = &m.input.ident;
    let p = quote!(#krate::__private);
    let r = quote!(#p::room);
    let key = &m.key;
    let namespace = &m.namespace;
    let type_name = ident.to_string();
    let names: Vec<&str> = m.fields.iter().map(|f| f.name.as_str()).collect();
    let public = matches!(m.access, Access::Public);

    let name_body = if m.fields.is_empty() {
        quote!(#p::Cow::Borrowed(#key))
    } else {
        // Keys cannot hold braces (checked), so the key is a plain literal
        // part of the format string.
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

    let shape = match m.shape {
        Shape::Unit | Shape::EmptyBraces | Shape::EmptyParens => quote!(Unit),
        Shape::Tuple => quote!(Tuple),
        Shape::Named => quote!(Named),
    };
    let gets = m
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| quote_spanned!(f.ty.span()=> __fields.get(#i)?));
    let construct = match m.shape {
        Shape::Unit => quote!(Self),
        Shape::EmptyBraces => quote!(Self {}),
        Shape::EmptyParens => quote!(Self()),
        Shape::Tuple => quote!(Self(#(#gets),*)),
        Shape::Named => {
            let members = m.fields.iter().map(|f| &f.member);
            quote!(Self { #(#members: #gets),* })
        }
    };

    let authorize_body = match &m.access {
        Access::Public => quote!(::core::future::ready(#krate::Authorization::Allow)),
        Access::Authorize(path) => {
            let call = quote_spanned!(path.span()=> #path(__ctx, __room));
            quote! {
                async move {
                    #[allow(unused_imports)]
                    use #p::{FutureKind as _, ValueKind as _};
                    let __value = #call;
                    let __value = (&__value).__broadcast_future_kind().resolve(__value).await;
                    #r::IntoAuthorization::into_authorization(__value)
                }
            }
        }
    };

    let hook = |name: TokenStream, path: &Option<syn::Path>| {
        path.as_ref().map(|path| {
            let call = quote_spanned!(path.span()=> #path(__ctx, __room));
            quote! {
                fn #name(
                    __ctx: &#krate::join::JoinContext,
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
            impl #krate::JoinableRoom for #ident {
                const KEY: &'static str = #key;
                const NAMESPACE: &'static str = #namespace;
                const PUBLIC: bool = #public;
                const FIELDS: &'static [&'static str] = &[#(#names),*];

                fn from_join_data(
                    __data: &#r::JsonValue,
                ) -> #p::Result<Self, #krate::RoomDataError> {
                    #[allow(unused_variables)]
                    let __fields = #r::FieldValues::new(
                        #key,
                        <Self as #krate::JoinableRoom>::FIELDS,
                        #r::Shape::#shape,
                        __data,
                    )?;
                    #p::Result::Ok(#construct)
                }

                fn authorize(
                    __ctx: &#krate::join::JoinContext,
                    __room: &Self,
                ) -> impl #p::Future<Output = #krate::Authorization> + ::core::marker::Send {
                    #authorize_body
                }

                #on_join
                #on_leave
            }

            #p::inventory::submit! {
                #krate::registry::RoomDescriptor::new(#key, #type_name, #namespace)
                    .fields(&[#(#names),*])
                    .public(#public)
                    .source(::core::module_path!(), ::core::file!(), ::core::line!())
            }

            #p::inventory::submit! {
                #krate::join::RoomEntry::of::<#ident>(#type_name)
            }
        };
    }
}

/// What a failed derive still emits besides its errors, so code naming the
/// room (`ChatRoom(1).name()`, `on = ChatRoom(..)`) type-checks and the user
/// sees only the real mistakes.
pub fn fallback(input: &syn::DeriveInput, krate: &syn::Path) -> TokenStream {
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let p = quote!(#krate::__private);
    // `JoinableRoom` needs `Send + Sync + 'static`, which a generic type
    // may not meet; a stub for it would only add errors there.
    let joinable = input.generics.params.is_empty().then(|| {
        quote! {
            #[automatically_derived]
            impl #krate::JoinableRoom for #ident {
                const KEY: &'static str = "";
                const PUBLIC: bool = false;
                const FIELDS: &'static [&'static str] = &[];
                fn from_join_data(
                    _: &#p::room::JsonValue,
                ) -> #p::Result<Self, #krate::RoomDataError> {
                    #p::Result::Err(#krate::RoomDataError::Name {
                        key: "",
                        reason: #p::format!("this room failed to derive"),
                    })
                }
                fn authorize(
                    _: &#krate::join::JoinContext,
                    _: &Self,
                ) -> impl #p::Future<Output = #krate::Authorization> + ::core::marker::Send {
                    ::core::future::ready(#krate::Authorization::Forbid)
                }
            }
        }
    });
    quote! {
        #[allow(clippy::all)]
        const _: () = {
            #[automatically_derived]
            impl #impl_generics #krate::Room for #ident #ty_generics #where_clause {
                fn name(&self) -> #p::Cow<'static, str> {
                    #p::Cow::Borrowed("")
                }
            }
            #joinable
        };
    }
}
