//! The walk over a parsed jq program that finds what it may read of its input: it follows
//! the places in the document each value may come from through every construct it
//! understands exactly, and reads whole what anything else touches. It is one recursive
//! function over jq's syntax (with its helpers), hence one file.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::LazyLock;

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};
use jaq_core::path::Part;

use super::env::{Callee, Entry, Env, bind_nowhere};
use super::{Demand, Step, literal};
use crate::mapping::expr::PRELUDE;

/// The places in the document a value may be (a part of); empty for values the expression
/// made itself.
pub(super) type Places = Vec<Vec<Step>>;

/// Evaluations of terms one walk may make before giving up (and reading everything).
const MAX_STEPS: usize = 100_000;
/// Nested calls the walk follows before treating a call as reading its whole input.
const MAX_INLINED: usize = 64;

/// Natives that do not read their input, only their arguments.
const OWN_ARGUMENTS_ONLY: [(&str, usize); 8] = [
    ("uuid5", 2),
    ("first_of", 1),
    ("currency_rate", 2),
    ("in_currency", 3),
    ("empty", 0),
    ("null", 0),
    ("range", 3),
    ("error", 1),
];
/// Natives that read only these fields of their input.
const READS_FIELDS: [(&str, usize, &[&str]); 1] = [("attr", 1, &["note_attributes", "meta_data"])];

/// The standard definitions by name and arity (the last of a name wins, as in jq).
static PRELUDE_DEFS: LazyLock<HashMap<(&'static str, usize), &'static Def>> = LazyLock::new(|| {
    PRELUDE
        .iter()
        .map(|def| ((def.name, def.args.len()), def))
        .collect()
});

/// What `term`, run over a document, may read of it.
pub(in crate::mapping::fast) fn demand_of(term: &Term<&str>) -> Demand {
    let mut walk = Walk::default();
    let read = walk.term(term, &vec![Vec::new()], &Env::default());
    walk.whole(&read);
    if walk.gave_up {
        return Demand::whole();
    }
    walk.demand
}

#[derive(Default)]
struct Walk {
    demand: Demand,
    /// The definitions being followed, innermost last (by address).
    inlined: Vec<usize>,
    steps: usize,
    gave_up: bool,
}

impl Walk {
    fn whole(&mut self, places: &Places) {
        for place in places {
            self.demand.mark_whole(place);
        }
    }

    fn touch(&mut self, places: &Places) {
        for place in places {
            self.demand.node(place);
        }
    }

    /// Where the outputs of `term`, run over a value at `input`, may be; records what it reads.
    fn term<'s, 't>(
        &mut self,
        term: &'t Term<&'s str>,
        input: &Places,
        env: &Env<'s, 't>,
    ) -> Places {
        self.steps += 1;
        if self.gave_up || self.steps > MAX_STEPS {
            self.gave_up = true;
            return Vec::new();
        }
        match term {
            Term::Id => input.clone(),
            Term::Num(_) | Term::Break(_) => Vec::new(),
            Term::Var(name) => env.var(name),
            Term::Recurse => self.reads_whole(input),
            Term::Str(format, parts) => {
                if format.is_some() {
                    self.whole(input);
                }
                for part in parts {
                    if let StrPart::Term(t) = part {
                        let read = self.term(t, input, env);
                        self.whole(&read);
                    }
                }
                Vec::new()
            }
            Term::Arr(items) => {
                if let Some(items) = items {
                    let read = self.term(items, input, env);
                    self.whole(&read);
                }
                Vec::new()
            }
            Term::Obj(entries) => {
                for (key, value) in entries {
                    let read = match (key, value) {
                        (key, Some(value)) => {
                            let read = self.term(key, input, env);
                            self.whole(&read);
                            self.term(value, input, env)
                        }
                        // `{$x}`
                        (Term::Var(name), None) => env.var(name),
                        // `{a}` is `{a: .a}`
                        (key, None) => match literal(key) {
                            Some(name) => with_step(input, Step::Field(name)),
                            None => {
                                let read = self.term(key, input, env);
                                self.whole(&read);
                                self.reads_whole(input)
                            }
                        },
                    };
                    self.whole(&read);
                }
                Vec::new()
            }
            Term::Neg(t) => {
                let read = self.term(t, input, env);
                self.reads_whole(&read)
            }
            Term::BinOp(l, op, r) => self.binop(l, op, r, input, env),
            Term::Label(_, t) => self.term(t, input, env),
            Term::Fold(_, xs, pattern, args) => {
                let read = self.term(xs, input, env);
                self.whole(&read);
                let env = bind_nowhere(pattern, env);
                for arg in args {
                    let read = self.term(arg, input, &env);
                    self.whole(&read);
                }
                self.reads_whole(input)
            }
            Term::TryCatch(t, catch) => {
                if catch.is_some() {
                    // the caught error quotes values as they are; give them all
                    self.gave_up = true;
                    return Vec::new();
                }
                self.term(t, input, env)
            }
            Term::IfThenElse(branches, otherwise) => {
                let mut out = Vec::new();
                for (condition, then) in branches {
                    let read = self.term(condition, input, env);
                    self.whole(&read);
                    out.extend(self.term(then, input, env));
                }
                match otherwise {
                    Some(otherwise) => out.extend(self.term(otherwise, input, env)),
                    None => out.extend(input.iter().cloned()),
                }
                out
            }
            Term::Def(defs, body) => {
                let mut env = env.clone();
                for def in defs {
                    env = env.with(Entry::Def(def, env.clone()));
                }
                self.term(body, input, &env)
            }
            Term::Call(name, args) => self.call(name, args, input, env),
            Term::Path(t, path) => {
                let mut at = self.term(t, input, env);
                for (part, _) in &path.0 {
                    self.touch(&at);
                    match part {
                        Part::Index(index) => match literal(index) {
                            Some(name) => at = with_step(&at, Step::Field(name)),
                            None => {
                                // `.[i]`: the index is computed from the path's input
                                let read = self.term(index, input, env);
                                self.whole(&read);
                                at = with_step(&at, Step::Each);
                            }
                        },
                        Part::Range(None, None) => at = with_step(&at, Step::Each),
                        Part::Range(from, upto) => {
                            for bound in from.iter().chain(upto) {
                                let read = self.term(bound, input, env);
                                self.whole(&read);
                            }
                            at = self.reads_whole(&at);
                        }
                    }
                }
                self.touch(&at);
                at
            }
        }
    }

    /// Reads `places` whole; the result is a value of its own.
    fn reads_whole(&mut self, places: &Places) -> Places {
        self.whole(places);
        Vec::new()
    }

    fn binop<'s, 't>(
        &mut self,
        l: &'t Term<&'s str>,
        op: &'t BinaryOp<&'s str>,
        r: &'t Term<&'s str>,
        input: &Places,
        env: &Env<'s, 't>,
    ) -> Places {
        match op {
            BinaryOp::Pipe(None) => {
                let between = self.term(l, input, env);
                self.term(r, &between, env)
            }
            BinaryOp::Pipe(Some(Pattern::Var(name))) => {
                let value = self.term(l, input, env);
                let env = env.with(Entry::Var(name, Rc::new(value)));
                self.term(r, input, &env)
            }
            BinaryOp::Pipe(Some(pattern)) => {
                // destructuring: the value is read whole, its parts bound to nowhere
                let value = self.term(l, input, env);
                self.whole(&value);
                self.whole(input);
                let mut keys = Vec::new();
                pattern_keys(pattern, &mut keys);
                for key in keys {
                    let read = self.term(key, input, env);
                    self.whole(&read);
                }
                let env = bind_nowhere(pattern, env);
                self.term(r, input, &env)
            }
            BinaryOp::Comma | BinaryOp::Alt => {
                let mut out = self.term(l, input, env);
                out.extend(self.term(r, input, env));
                out
            }
            BinaryOp::Cmp(_) => {
                // Against a scalar literal, a value's type decides the comparison unless it
                // is a scalar itself, and a projection keeps the type of every node read and
                // every scalar as it is: `$a == null` needs no more of an object than that.
                for (side, other) in [(l, r), (r, l)] {
                    let read = self.term(side, input, env);
                    if is_scalar_literal(other, env) {
                        self.touch(&read);
                    } else {
                        self.whole(&read);
                    }
                }
                Vec::new()
            }
            BinaryOp::Or | BinaryOp::And | BinaryOp::Math(_) => {
                let read = self.term(l, input, env);
                self.whole(&read);
                let read = self.term(r, input, env);
                self.reads_whole(&read)
            }
            BinaryOp::Assign | BinaryOp::Update | BinaryOp::UpdateMath(_) | BinaryOp::UpdateAlt => {
                for side in [l, r] {
                    let read = self.term(side, input, env);
                    self.whole(&read);
                }
                self.reads_whole(input)
            }
        }
    }

    fn call<'s, 't>(
        &mut self,
        name: &'s str,
        args: &'t [Term<&'s str>],
        input: &Places,
        env: &Env<'s, 't>,
    ) -> Places {
        let arity = args.len();
        let callee = env.entries().find_map(|entry| match entry {
            Entry::Def(def, scope) if def.name == name && def.args.len() == arity => {
                Some(Callee::Def(def, scope.clone()))
            }
            Entry::Param(param, arg, scope) if *param == name && arity == 0 => {
                Some(Callee::Param(arg, scope.clone()))
            }
            _ => None,
        });
        let callee = callee.or_else(|| {
            let def: &'t Def<&'s str> = PRELUDE_DEFS.get(&(name, arity))?;
            Some(Callee::Def(def, Env::default()))
        });
        match callee {
            Some(Callee::Param(arg, scope)) => self.term(arg, input, &scope),
            Some(Callee::Def(def, scope)) => {
                let id = std::ptr::from_ref(def) as usize;
                if self.inlined.contains(&id) || self.inlined.len() >= MAX_INLINED {
                    return self.native(name, args, input, env);
                }
                self.inlined.push(id);
                let mut inner = scope.with(Entry::Def(def, scope.clone()));
                for (param, arg) in def.args.iter().zip(args) {
                    // `def f($a)` is `def f(a): a as $a | …`
                    if let Some(bare) = param.strip_prefix('$') {
                        let value = self.term(arg, input, env);
                        inner = inner.with(Entry::Var(param, Rc::new(value)));
                        inner = inner.with(Entry::Param(bare, arg, env.clone()));
                    } else {
                        inner = inner.with(Entry::Param(param, arg, env.clone()));
                    }
                }
                let out = self.term(&def.body, input, &inner);
                self.inlined.pop();
                out
            }
            None => self.native(name, args, input, env),
        }
    }

    /// A native function (or a call not followed): its arguments run over the input and are
    /// read whole, and so is the input, unless the function is known to read less of it.
    fn native<'s, 't>(
        &mut self,
        name: &'s str,
        args: &'t [Term<&'s str>],
        input: &Places,
        env: &Env<'s, 't>,
    ) -> Places {
        for arg in args {
            let read = self.term(arg, input, env);
            self.whole(&read);
        }
        let arity = args.len();
        if OWN_ARGUMENTS_ONLY.contains(&(name, arity)) {
            return Vec::new();
        }
        let known = READS_FIELDS
            .iter()
            .find(|(n, a, _)| *n == name && *a == arity);
        if let Some((_, _, fields)) = known {
            self.touch(input);
            for field in *fields {
                let at = with_step(input, Step::Field(field.to_string()));
                self.whole(&at);
            }
            return Vec::new();
        }
        self.reads_whole(input)
    }
}

/// The computed keys of a destructuring pattern (`{(f): $x}`).
fn pattern_keys<'p, 's>(pattern: &'p Pattern<&'s str>, keys: &mut Vec<&'p Term<&'s str>>) {
    match pattern {
        Pattern::Var(_) => {}
        Pattern::Arr(items) => items.iter().for_each(|p| pattern_keys(p, keys)),
        Pattern::Obj(entries) => {
            for (key, p) in entries {
                keys.push(key);
                pattern_keys(p, keys);
            }
        }
    }
}

/// A number, a string without interpolation, or `null`, `true` or `false` where no local
/// definition or parameter takes their name.
fn is_scalar_literal(term: &Term<&str>, env: &Env) -> bool {
    match term {
        Term::Num(_) => true,
        Term::Str(..) => literal(term).is_some(),
        Term::Call(name, args) if args.is_empty() && ["null", "true", "false"].contains(name) => {
            !env.entries().any(|entry| match entry {
                Entry::Def(def, _) => def.name == *name && def.args.is_empty(),
                Entry::Param(param, _, _) => param == name,
                Entry::Var(..) => false,
            })
        }
        _ => false,
    }
}

fn with_step(places: &Places, step: Step) -> Places {
    places
        .iter()
        .map(|place| {
            let mut place = place.clone();
            place.push(step.clone());
            place
        })
        .collect()
}
