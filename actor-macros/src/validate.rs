//! What cannot be a process actor, every mistake reported at its cause.

use crate::ast::{Actor, Input, Param};

/// The actor, or every reason it cannot be one (combined into one error).
pub(crate) fn validate<'i, 'a>(input: &'i Input<'a>) -> syn::Result<&'i Actor<'a>> {
    const NOT_A_STRUCT: &str =
        "#[process_actor] goes on a struct; an enum or union cannot be a process actor (wrap it in a struct)";
    let actor = match input {
        Input::Struct(actor) => actor,
        Input::Enum(e) => return Err(syn::Error::new_spanned(e.enum_token, NOT_A_STRUCT)),
        Input::Union(u) => return Err(syn::Error::new_spanned(u.union_token, NOT_A_STRUCT)),
        Input::Other(item) => {
            return Err(syn::Error::new_spanned(
                item,
                "#[process_actor] goes on a struct (the actor's state)",
            ))
        }
    };
    let mut errors = actor.params.iter().filter_map(|p| match p {
        Param::Lifetime(l) => Some(syn::Error::new_spanned(
            l,
            format!(
                "a process actor cannot borrow: remove lifetime `{}`",
                l.lifetime
            ),
        )),
        Param::Type(t, bounds) if !bounds.crosses_processes() => {
            let name = &t.ident;
            Some(syn::Error::new_spanned(
                t,
                format!(
                    "type parameter `{name}` of a process actor needs `{name}: procactor::Message` \
                     (Serialize + DeserializeOwned + Send + 'static)"
                ),
            ))
        }
        Param::Type(..) | Param::Const => None,
    });
    match errors.next() {
        None => Ok(actor),
        Some(mut first) => {
            errors.for_each(|e| first.combine(e));
            Err(first)
        }
    }
}
