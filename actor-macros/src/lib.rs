//! Attribute macros for procactor. Use them through the facade: `#[procactor::main]`,
//! `#[procactor::process_actor]`.
//!
//! `#[process_actor]` is built in passes: `attr` (its options) → `ast` (a typed view
//! of the struct, keeping the syn nodes for spans) → `validate` → `expand`.

mod ast;
mod attr;
mod expand;
mod facade;
mod validate;

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
    let krate = facade::path();
    let stmt: syn::Stmt = syn::parse_quote!(#krate::init(););
    f.block.stmts.insert(0, stmt);
    quote!(#f).into()
}

/// Makes a struct a process actor: implements `procactor::ProcessActor` for it (its
/// registered name and its kind of mailbox). You implement `procactor::Actor` (the
/// message type, the reply type and `handle`); a `Supervisor` starts it.
///
/// The struct is the actor's state, which travels to the actor's process when it
/// starts: it must derive `serde::Serialize` and `serde::Deserialize`, cannot borrow,
/// and its type parameters must be messages (`T: procactor::Message`). A non-generic
/// actor's name is registered before `main` (`procactor::registered_actors()`, Linux).
///
/// A generic actor also needs `#[serde(bound = "T: procactor::Message")]`: serde's
/// derive would add `T: Deserialize<'de>`, which is ambiguous next to
/// `T: DeserializeOwned`.
///
/// # Options
///
/// - none, or `mailbox = queue` (the default): a queue of messages; senders use
///   `ActorRef::send` and get nothing back;
/// - `mailbox = pipe`: a request/reply mailbox; `ActorRef::call` sends a request and
///   waits for `handle`'s reply (`call` only exists for `mailbox = pipe`, and a pipe
///   actor's `impl Actor` names its `type Reply`).
///
/// # Errors
///
/// Each at its cause, all of them in one compile:
/// - on an enum or a union: "#[process_actor] goes on a struct; an enum or union cannot
///   be a process actor (wrap it in a struct)" (on any other item: "#[process_actor] goes
///   on a struct (the actor's state)");
/// - an unknown option, an unknown mailbox, an option given twice: "unknown option `x`,
///   expected `mailbox`", "unknown mailbox `y`, expected `queue` or `pipe`", "option
///   `mailbox` given twice";
/// - a lifetime parameter: "a process actor cannot borrow: remove lifetime `'a`";
/// - a type parameter bounded neither by `Message` nor by all of `Serialize`,
///   `DeserializeOwned`, `Send` and `'static` (in its list or the where clause): "type
///   parameter `T` of a process actor needs `T: procactor::Message` (…)";
/// - no serde derives: "`Name` must be Serialize + Deserialize to be a process actor",
///   at the struct's name;
/// - no `impl Actor` for the struct: rustc's own "the trait bound `Name: Actor` is not
///   satisfied", at the struct's name;
/// - a pipe actor's `impl Actor` without `type Reply`: rustc's own E0046.
///
/// # Examples
///
/// ```ignore
/// use procactor::{process_actor, Actor, ActorError, Context};
/// use serde::{Deserialize, Serialize};
///
/// /// Adds up what it is sent.
/// #[process_actor]
/// #[derive(Serialize, Deserialize)]
/// struct Counter {
///     total: u64,
/// }
///
/// impl Actor for Counter {
///     type Msg = u64;
///     type Reply = ();
///     fn handle(&mut self, n: u64, _: &mut Context<Self>) -> Result<(), ActorError> {
///         self.total += n;
///         Ok(())
///     }
/// }
///
/// /// Answers each call: `actor_ref.call(2)` returns `Ok(4)`.
/// #[process_actor(mailbox = pipe)]
/// #[derive(Serialize, Deserialize)]
/// struct Doubler;
///
/// impl Actor for Doubler {
///     type Msg = u64;
///     type Reply = u64;
///     fn handle(&mut self, n: u64, _: &mut Context<Self>) -> Result<u64, ActorError> {
///         Ok(n * 2)
///     }
/// }
/// ```
#[proc_macro_attribute]
pub fn process_actor(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = parse_macro_input!(item as syn::Item);
    let options = attr::Options::parse(attr.into());
    let input = ast::Input::from_item(&item);
    match (options, validate::validate(&input)) {
        (Ok(options), Ok(actor)) => expand::expand(&item, actor, &options),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => expand::unchanged_with_errors(&item, e),
        (Err(mut e), Err(more)) => {
            e.combine(more);
            expand::unchanged_with_errors(&item, e)
        }
    }
    .into()
}
