//! Where the generated code finds the facade crate: `::procactor`, or the name the
//! user's `Cargo.toml` gives it (`pa = { package = "procactor", .. }`).

use proc_macro2::{Span, TokenStream};
use proc_macro_crate::{crate_name, FoundCrate};
use quote::quote;

/// The path of the facade crate as the crate being compiled names it.
///
/// `proc_macro_crate` reads the user's `Cargo.toml` (dependencies and
/// dev-dependencies). `FoundCrate::Itself` (the package named `procactor` itself) means
/// its tests, examples or doctests, which are crates of their own and name the facade
/// `procactor` (its library never uses these macros), so it is `::procactor` too, as is
/// every case where the manifest cannot be read (e.g. a build without Cargo).
pub(crate) fn path() -> TokenStream {
    match crate_name("procactor") {
        Ok(FoundCrate::Name(name)) if name != "procactor" => {
            let ident = syn::Ident::new(&name, Span::call_site());
            quote!(::#ident)
        }
        _ => quote!(::procactor),
    }
}
