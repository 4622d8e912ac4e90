//! The generated code: the `ProcessActor` impl, the serde check at the struct's name,
//! and (for a non-generic struct) the registration of its name before `main`.

use crate::ast::Actor;
use crate::attr::{Mailbox, Options};
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::LitStr;

/// The item followed by its generated impls.
pub(crate) fn expand(item: &syn::Item, actor: &Actor<'_>, options: &Options) -> TokenStream {
    let ident = actor.ident;
    // Located at the struct's name (so rustc's errors about the generated code point at
    // it) but resolved as the macro's own code (so lints treat it as generated).
    let span = Span::call_site().located_at(ident.span());
    let (impl_generics, ty_generics, where_clause) = actor.generics.split_for_impl();
    let name = LitStr::new(&ident.unraw().to_string(), ident.span());
    // Written out again in the registration rather than `<Name as ProcessActor>::NAME`,
    // so that a missing `impl Actor` is reported once (at the struct's name), not twice.
    let name_expr = quote_spanned!(span=> ::core::concat!(::core::module_path!(), "::", #name));
    let krate = crate::facade::path();
    let mailbox = match options.mailbox {
        Mailbox::Queue => quote_spanned!(span=> #krate::__private::QueueMailbox),
        Mailbox::Pipe => quote_spanned!(span=> #krate::__private::PipeMailbox),
    };

    let process_actor = quote_spanned! {span=>
        #[automatically_derived]
        impl #impl_generics #krate::__private::ProcessActor for #ident #ty_generics
        #where_clause
        {
            const NAME: &'static str = #name_expr;
            type Mailbox = #mailbox;
        }
    };

    // Never called: type-checking its body is the check (the trait's
    // `diagnostic::on_unimplemented` says what to derive).
    let serde_check = quote_spanned! {span=>
        const _: () = {
            #[allow(dead_code)]
            fn __procactor_check #impl_generics () #where_clause {
                #krate::__private::assert_serde_actor::<#ident #ty_generics>();
            }
        };
    };

    let register = if actor.is_generic() {
        TokenStream::new()
    } else {
        // `link_section` with the macro's own span: it is written for this crate's
        // edition, whatever the user's crate is.
        let link_section = quote!(#[link_section = ".init_array"]);
        quote_spanned! {span=>
            #[cfg(target_os = "linux")]
            const _: () = {
                #[used]
                #link_section
                static __PROCACTOR_REGISTER: extern "C" fn() = {
                    extern "C" fn __procactor_register() {
                        #krate::__private::register_actor(#name_expr);
                    }
                    __procactor_register
                };
            };
        }
    };

    let mut out = item.to_token_stream();
    out.extend([process_actor, serde_check, register]);
    out
}

/// On error: the item unchanged (so that only the real errors show, not follow-on ones
/// about a missing struct) and the errors.
pub(crate) fn unchanged_with_errors(item: &syn::Item, error: syn::Error) -> TokenStream {
    let mut out = error.to_compile_error();
    item.to_tokens(&mut out);
    out
}
