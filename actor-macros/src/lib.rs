//! Attribute macros for procactor. Use them through the facade: `#[procactor::main]`.

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, ItemFn};

/// Makes `fn main` start with `procactor::init()`, so that the binary can start procactor
/// children (a child is this binary re-executed; `init` is where it runs its target).
///
/// ```ignore
/// #[procactor::main]
/// fn main() {
///     // start processes here
/// }
/// ```
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut f = parse_macro_input!(item as ItemFn);
    let mut errors = Vec::new();
    if !attr.is_empty() {
        let attr = proc_macro2::TokenStream::from(attr);
        errors.push(syn::Error::new_spanned(
            attr,
            "#[procactor::main] takes no arguments",
        ));
    }
    if let Some(a) = f.sig.asyncness.take() {
        // reported here; the function is re-emitted without `async` so that this is
        // the only error shown
        errors.push(syn::Error::new_spanned(
            a,
            "#[procactor::main] goes on a synchronous `fn main`; call procactor::init() first in an async runtime's main instead",
        ));
    }
    if !errors.is_empty() {
        let errs = errors.into_iter().map(|e| e.to_compile_error());
        return quote!(#(#errs)* #f).into();
    }
    let stmt: syn::Stmt = syn::parse_quote!(::procactor::init(););
    f.block.stmts.insert(0, stmt);
    quote!(#f).into()
}
