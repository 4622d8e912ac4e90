//! A typed view of the item under `#[process_actor]`, keeping the syn nodes so that
//! errors and generated code can point at what the user wrote.

use syn::{
    GenericParam, Generics, Ident, Item, ItemEnum, ItemStruct, ItemUnion, LifetimeParam, Path,
    TraitBoundModifier, Type, TypeParam, TypeParamBound, WherePredicate,
};

/// What the attribute was put on.
pub(crate) enum Input<'a> {
    Struct(Actor<'a>),
    Enum(&'a ItemEnum),
    Union(&'a ItemUnion),
    /// A function, an impl, …
    Other(&'a Item),
}

/// A struct: the would-be actor.
pub(crate) struct Actor<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) generics: &'a Generics,
    pub(crate) params: Vec<Param<'a>>,
}

/// One generic parameter of the struct.
pub(crate) enum Param<'a> {
    Lifetime(&'a LifetimeParam),
    /// A type parameter, with what its bounds (in the list and the where clause) say.
    Type(&'a TypeParam, Bounds),
    Const,
}

/// Which of the bounds a value needs to cross a process boundary a type parameter has.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub(crate) message: bool,
    pub(crate) serialize: bool,
    pub(crate) deserialize_owned: bool,
    pub(crate) send: bool,
    pub(crate) static_: bool,
}

impl Bounds {
    /// `T: Message`, or all of `Serialize + DeserializeOwned + Send + 'static`.
    pub(crate) fn crosses_processes(&self) -> bool {
        self.message || (self.serialize && self.deserialize_owned && self.send && self.static_)
    }

    fn add(&mut self, bound: &TypeParamBound) {
        match bound {
            TypeParamBound::Trait(t) if matches!(t.modifier, TraitBoundModifier::None) => {
                match last_ident(&t.path).map(|i| i.to_string()).as_deref() {
                    Some("Message") => self.message = true,
                    Some("Serialize") => self.serialize = true,
                    Some("DeserializeOwned") => self.deserialize_owned = true,
                    Some("Send") => self.send = true,
                    _ => {}
                }
            }
            TypeParamBound::Lifetime(l) if l.ident == "static" => self.static_ = true,
            _ => {}
        }
    }
}

fn last_ident(path: &Path) -> Option<&Ident> {
    path.segments.last().map(|s| &s.ident)
}

/// Whether `ty` is exactly the type parameter `ident` (as bounded in a where clause).
fn is_param(ty: &Type, ident: &Ident) -> bool {
    match ty {
        Type::Path(p) => p.qself.is_none() && p.path.get_ident() == Some(ident),
        Type::Paren(p) => is_param(&p.elem, ident),
        Type::Group(g) => is_param(&g.elem, ident),
        _ => false,
    }
}

impl<'a> Input<'a> {
    pub(crate) fn from_item(item: &'a Item) -> Input<'a> {
        match item {
            Item::Struct(s) => Input::Struct(Actor::from_struct(s)),
            Item::Enum(e) => Input::Enum(e),
            Item::Union(u) => Input::Union(u),
            other => Input::Other(other),
        }
    }
}

impl<'a> Actor<'a> {
    fn from_struct(s: &'a ItemStruct) -> Actor<'a> {
        let generics = &s.generics;
        let params = generics
            .params
            .iter()
            .map(|p| match p {
                GenericParam::Lifetime(l) => Param::Lifetime(l),
                GenericParam::Const(_) => Param::Const,
                GenericParam::Type(t) => {
                    let mut bounds = Bounds::default();
                    t.bounds.iter().for_each(|b| bounds.add(b));
                    let predicates = generics.where_clause.iter().flat_map(|w| &w.predicates);
                    for pred in predicates {
                        if let WherePredicate::Type(pt) = pred {
                            if pt.lifetimes.is_none() && is_param(&pt.bounded_ty, &t.ident) {
                                pt.bounds.iter().for_each(|b| bounds.add(b));
                            }
                        }
                    }
                    Param::Type(t, bounds)
                }
            })
            .collect();
        Actor {
            ident: &s.ident,
            generics,
            params,
        }
    }

    /// Whether the struct has generic parameters of any kind (then it has no single
    /// name to register before `main`).
    pub(crate) fn is_generic(&self) -> bool {
        !self.params.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(item: Item) -> Vec<bool> {
        let Input::Struct(actor) = Input::from_item(&item) else {
            panic!("not a struct")
        };
        actor
            .params
            .iter()
            .filter_map(|p| match p {
                Param::Type(_, b) => Some(b.crosses_processes()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn message_or_all_four_bounds() {
        let item = syn::parse_quote! {
            struct S<A: procactor::Message, B, C: Serialize + Send, D: Clone, const N: usize>
            where
                B: serde::Serialize + serde::de::DeserializeOwned,
                B: Send + 'static,
                C: DeserializeOwned,
                D: ?Sized;
        };
        assert_eq!(bounds(item), [true, true, false, false]);
    }
}
