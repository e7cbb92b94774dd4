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
    let access = match m.access {
        Access::Public => quote!(Public),
        Access::Authorize(_) => quote!(Authorized),
        Access::ServerOnly => quote!(ServerOnly),
    };

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
        Access::ServerOnly => None,
        Access::Public => Some(quote!(::core::future::ready(#krate::join::Authorization::Allow))),
        Access::Authorize(path) => Some({
            let call = quote_spanned!(path.span()=> #path(__ctx, __room));
            quote! {
                async move {
                    #[allow(unused_imports)]
                    use #p::{FutureKind as _, ValueKind as _};
                    let __value = #call;
                    let __value = (&__value).__broadcast_future_kind().resolve(__value).await;
                    #krate::join::IntoAuthorization::into_authorization(__value)
                }
            }
        }),
    };
    let authorize_fn = authorize_body.map(|body| {
        quote! {
            fn authorize(
                __ctx: &#krate::join::JoinContext,
                __room: &Self,
            ) -> impl #p::Future<Output = #krate::join::Authorization> + ::core::marker::Send {
                #body
            }
        }
    });

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
            impl #krate::join::JoinableRoom for #ident {
                const KEY: &'static str = #key;
                const NAMESPACE: &'static str = #namespace;
                const ACCESS: #krate::join::Access = #krate::join::Access::#access;
                const FIELDS: &'static [&'static str] = &[#(#names),*];

                fn from_join_data(
                    __data: &#p::Value,
                ) -> #p::Result<Self, #krate::join::RoomDataError> {
                    #[allow(unused_variables)]
                    let __fields = #r::FieldValues::new(
                        #key,
                        <Self as #krate::join::JoinableRoom>::FIELDS,
                        #r::Shape::#shape,
                        __data,
                    )?;
                    #p::Result::Ok(#construct)
                }

                #authorize_fn
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
            impl #krate::join::JoinableRoom for #ident {
                const KEY: &'static str = "";
                const ACCESS: #krate::join::Access = #krate::join::Access::ServerOnly;
                const FIELDS: &'static [&'static str] = &[];
                fn from_join_data(
                    _: &#p::Value,
                ) -> #p::Result<Self, #krate::join::RoomDataError> {
                    #p::Result::Err(#krate::join::RoomDataError::Name {
                        key: "",
                        reason: #p::format!("this room failed to derive"),
                    })
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
