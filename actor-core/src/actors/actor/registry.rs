//! The names of the actor types linked into this binary.

use serde::de::DeserializeOwned;
use serde::Serialize;

static REGISTRY: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());

/// Records an actor type's name; `#[process_actor]` calls it from a load-time
/// constructor of the binary (`.init_array`), so every actor linked into a program is
/// known before `main` runs. Not for direct use.
#[doc(hidden)]
pub fn register_actor(name: &'static str) {
    let mut r = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    if !r.contains(&name) {
        r.push(name);
    }
}

/// The names of the actor types `#[process_actor]` registered in this binary
/// (non-generic ones: a generic actor has no single name to register before `main`).
///
/// # Examples
///
/// ```
/// use procactor::{process_actor, Actor, ActorError, Context, ProcessActor};
/// use serde::{Deserialize, Serialize};
///
/// #[process_actor]
/// #[derive(Serialize, Deserialize)]
/// struct Echo;
/// impl Actor for Echo {
///     type Msg = String;
///     type Reply = ();
///     fn handle(&mut self, _: String, _: &mut Context<Self>) -> Result<(), ActorError> { Ok(()) }
/// }
///
/// fn main() {
///     assert!(procactor::registered_actors().contains(&Echo::NAME));
///     assert!(Echo::NAME.ends_with("::Echo"));
/// }
/// ```
pub fn registered_actors() -> Vec<&'static str> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Implemented for every type that is `Serialize + DeserializeOwned`; `#[process_actor]`
/// asserts it so that a struct without serde gets one clear error at its name.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` must be Serialize + Deserialize to be a process actor",
    label = "add #[derive(serde::Serialize, serde::Deserialize)] to this struct",
    note = "an actor's state travels to its process when it starts"
)]
pub trait SerdeActor {}
impl<T: Serialize + DeserializeOwned> SerdeActor for T {}

#[doc(hidden)]
pub fn assert_serde_actor<T: SerdeActor + ?Sized>() {}
