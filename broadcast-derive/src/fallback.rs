//! What a failed derive emits: its errors, plus stub impls so the code that
//! uses the type still type-checks and the user sees only the real mistakes
//! (thiserror's `fallback`).

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

pub fn event(input: &DeriveInput, krate: &syn::Path, err: syn::Error) -> TokenStream {
    let mut out = err.to_compile_error();
    // A stub for a generic type would add trait-bound errors of its own.
    if !input.generics.params.is_empty() {
        return out;
    }
    let ident = &input.ident;
    let p = quote!(#krate::__private);
    out.extend(quote! {
        #[allow(clippy::all)]
        const _: () = {
            #[automatically_derived]
            impl #krate::BroadcastEvent for #ident {
                const NAME: &'static str = "";
                fn broadcast_as(&self) -> impl #p::Future<
                    Output = #p::Result<impl #p::Serialize, #krate::PayloadError>
                > + ::core::marker::Send {
                    async move { #p::Result::Ok(()) }
                }
            }
        };
    });
    out
}

pub fn room(input: &DeriveInput, krate: &syn::Path, err: syn::Error) -> TokenStream {
    let mut out = err.to_compile_error();
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let p = quote!(#krate::__private);
    let j = quote!(#krate::join);
    let namespace = broadcast_rules::DEFAULT_NAMESPACE;
    // `JoinableRoom` needs `Send + Sync + 'static`, which a generic type may
    // not meet; a stub for it would only add errors there. A server-only
    // stub joins nobody and needs no `authorize`.
    let joinable = input.generics.params.is_empty().then(|| {
        quote! {
            #[automatically_derived]
            impl #j::JoinableRoom for #ident {
                const KEY: &'static str = "";
                const NAMESPACE: &'static str = #namespace;
                const ACCESS: #j::Access = #j::Access::ServerOnly;
                const FIELDS: &'static [&'static str] = &[];
                fn from_join_data(
                    _: &#p::Value,
                ) -> #p::Result<Self, #j::RoomDataError> {
                    #p::Result::Err(#j::RoomDataError::Name {
                        key: "",
                        reason: #p::format!("this room failed to derive"),
                    })
                }
            }
        }
    });
    out.extend(quote! {
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
    });
    out
}

/// For the case the checks rule out: a derive that produced nothing yet
/// reported nothing must still not compile silently.
pub fn unexplained(input: &DeriveInput) -> syn::Error {
    syn::Error::new_spanned(
        &input.ident,
        "broadcast-derive could not read this type but found nothing wrong with it; please report this",
    )
}
