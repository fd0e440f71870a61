//! What is in scope during the walk: variables with the places their values may be,
//! definitions and filter parameters, innermost first.

use std::rc::Rc;

use jaq_core::load::parse::{Def, Pattern, Term};

use super::walk::Places;

/// What is in scope: variables, definitions and filter parameters, innermost first.
#[derive(Clone, Default)]
pub(super) struct Env<'s, 't>(Option<Rc<Link<'s, 't>>>);

pub(super) struct Link<'s, 't> {
    entry: Entry<'s, 't>,
    next: Env<'s, 't>,
}

pub(super) enum Entry<'s, 't> {
    /// `$name` (with its `$`) and where its value may be.
    Var(&'s str, Rc<Places>),
    /// A definition and what was in scope where it was defined.
    Def(&'t Def<&'s str>, Env<'s, 't>),
    /// A filter parameter, bound to the caller's argument in the caller's scope.
    Param(&'s str, &'t Term<&'s str>, Env<'s, 't>),
}

impl<'s, 't> Env<'s, 't> {
    pub(super) fn with(&self, entry: Entry<'s, 't>) -> Env<'s, 't> {
        Env(Some(Rc::new(Link {
            entry,
            next: self.clone(),
        })))
    }

    pub(super) fn entries(&self) -> impl Iterator<Item = &Entry<'s, 't>> {
        let mut link = self.0.as_deref();
        std::iter::from_fn(move || {
            let current = link?;
            link = current.next.0.as_deref();
            Some(&current.entry)
        })
    }

    pub(super) fn var(&self, name: &str) -> Places {
        self.entries()
            .find_map(|entry| match entry {
                Entry::Var(n, places) if *n == name => Some(places.as_ref().clone()),
                _ => None,
            })
            .unwrap_or_default()
    }
}

pub(super) enum Callee<'s, 't> {
    Def(&'t Def<&'s str>, Env<'s, 't>),
    Param(&'t Term<&'s str>, Env<'s, 't>),
}

/// A pattern's variables bound to values of their own.
pub(super) fn bind_nowhere<'s, 't>(pattern: &Pattern<&'s str>, env: &Env<'s, 't>) -> Env<'s, 't> {
    match pattern {
        Pattern::Var(name) => env.with(Entry::Var(name, Rc::new(Vec::new()))),
        Pattern::Arr(items) => items
            .iter()
            .fold(env.clone(), |env, p| bind_nowhere(p, &env)),
        Pattern::Obj(entries) => entries
            .iter()
            .fold(env.clone(), |env, (_, p)| bind_nowhere(p, &env)),
    }
}
