//! What of a webhook body the mapping expressions may read ([`Demand`]), found by walking
//! their jq code once when they compile ([`demand_of`]); [`super::project`] parses only
//! that part of a body.
//!
//! Parsing a 5 KB order into jq values costs more than evaluating a mapping's twenty
//! expressions over it, and a mapping reads a small part of it (a Legion event: totals, the
//! customer's phone, the product ids; not the line items' titles, variants, images and
//! properties). The parts nobody reads are still checked as JSON, but not built.
//!
//! # Soundness
//!
//! The walk follows the data through what it understands exactly: `.`, paths (`.a`,
//! `.a[]`, `.["a"]`), pipes, `,`, `//`, `as` bindings, `if`, `try` without `catch`, literals,
//! array and object construction, string interpolation, operators, and calls, which it
//! follows into the definitions called (ours, jq's standard ones and local `def`s), with
//! their filter arguments. A value compared with a scalar literal (`$a == null`) is read
//! for its **type** only. A value that reaches anything else (a native function such as
//! `tostring`, `length` or `keys`, another operator, an output) is read **whole**. Anything
//! the walk does not follow exactly (an update, `reduce`, a slice, recursion, `catch`, …)
//! reads its whole input, so a construct the walk does not know costs speed, never
//! correctness.
//!
//! Every node on a path that is read keeps its type: an object keeps the fields read, an
//! array the elements when some are read, a scalar is kept as is. That is what a comparison
//! with a scalar literal needs: an object or an array compares with it by type alone, a
//! scalar by its value. And an expression that
//! fails on the whole body (`.line_items.price` on an array) fails on the projected one too;
//! [`crate::mapping::Catalog`] re-runs a failed mapping over the whole body, so the error it reports
//! quotes the real values.

use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;
use std::sync::LazyLock;

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};
use jaq_core::path::Part;

use crate::mapping::expr::PRELUDE;

/// What of a JSON value is read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demand {
    /// All of it.
    pub(super) whole: bool,
    /// Fields read by name, with what is read of each. Hashed, because the parser looks up
    /// every key of every object it reads here; keyed by bytes, as the parser reads keys
    /// (see [`Demand::field`]).
    fields: foldhash::HashMap<Box<[u8]>, Demand>,
    /// The lengths of the names in `fields`, one bit each (63 for 63 bytes and longer):
    /// most keys of a webhook's objects are not read, and a key whose length no field has
    /// is passed over without hashing it or checking it is UTF-8.
    lengths: u64,
    /// What is read of every element of an array or every value of an object.
    pub(super) each: Option<Box<Demand>>,
}

impl Demand {
    /// All of the value.
    pub fn whole() -> Demand {
        Demand {
            whole: true,
            ..Demand::default()
        }
    }

    pub fn is_whole(&self) -> bool {
        self.whole
    }

    /// Adds what `other` reads.
    pub fn merge(&mut self, other: &Demand) {
        if self.whole {
            return;
        }
        if other.whole {
            *self = Demand::whole();
            return;
        }
        for (name, demand) in &other.fields {
            self.field_mut(name).merge(demand);
        }
        if let Some(each) = &other.each {
            self.each.get_or_insert_default().merge(each);
        }
    }

    /// Ready for the projected parse: what is read of every value is also read of each field.
    pub fn finished(mut self) -> Demand {
        self.finish();
        self
    }

    /// [`Demand::finished`] after merging `other`.
    #[cfg(test)]
    pub(super) fn finished_with(mut self, other: &Demand) -> Demand {
        self.merge(other);
        self.finished()
    }

    fn finish(&mut self) {
        if let Some(each) = &mut self.each {
            each.finish();
            for field in self.fields.values_mut() {
                field.merge(each);
            }
        }
        for field in self.fields.values_mut() {
            field.finish();
        }
    }

    /// The node at `path`, created as needed; None when it lies inside a whole one.
    fn node(&mut self, path: &[Step]) -> Option<&mut Demand> {
        let mut node = self;
        for step in path {
            if node.whole {
                return None;
            }
            node = match step {
                Step::Field(name) => node.field_mut(name.as_bytes()),
                Step::Each => node.each.get_or_insert_default(),
            };
        }
        (!node.whole).then_some(node)
    }

    fn mark_whole(&mut self, path: &[Step]) {
        if let Some(node) = self.node(path) {
            *node = Demand::whole();
        }
    }

    /// The demand on the field `name`, created as needed.
    fn field_mut(&mut self, name: &[u8]) -> &mut Demand {
        self.lengths |= length_bit(name.len());
        self.fields.entry(name.into()).or_default()
    }

    /// The demand on a field of an object, by the key's bytes as written in the body
    /// (names are UTF-8, so a key that is not matches no name, only `each`).
    pub(super) fn field(&self, name: &[u8]) -> Option<&Demand> {
        if self.lengths & length_bit(name.len()) != 0 {
            self.fields.get(name).or(self.each.as_deref())
        } else {
            self.each.as_deref()
        }
    }
}

/// A name length's bit in [`Demand::lengths`].
fn length_bit(length: usize) -> u64 {
    1 << length.min(63)
}

/// The paths read, jq style, one a line: `.` for all of it, `.a.b` for a field read whole,
/// `.a[].b` for a field of every element; a path read only for its type ends in ` (type)`.
impl fmt::Display for Demand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn paths(node: &Demand, path: &mut String, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let at = |path: &str| {
                if path.is_empty() {
                    ".".to_string()
                } else {
                    path.to_string()
                }
            };
            if node.whole {
                return writeln!(f, "{}", at(path));
            }
            if node.fields.is_empty() && node.each.is_none() {
                return writeln!(f, "{} (type)", at(path));
            }
            let len = path.len();
            let mut fields: Vec<_> = node.fields.iter().collect();
            fields.sort_unstable_by_key(|(name, _)| *name);
            for (name, field) in fields {
                path.push('.');
                path.push_str(&String::from_utf8_lossy(name));
                paths(field, path, f)?;
                path.truncate(len);
            }
            if let Some(each) = &node.each {
                path.push_str("[]");
                paths(each, path, f)?;
                path.truncate(len);
            }
            Ok(())
        }
        paths(self, &mut String::new(), f)
    }
}

/// One step from a value to a part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    /// Any element or value.
    Each,
}

/// The places in the document a value may be (a part of); empty for values the expression
/// made itself.
type Places = Vec<Vec<Step>>;

/// Evaluations of terms one walk may make before giving up (and reading everything).
const MAX_STEPS: usize = 100_000;
/// Nested calls the walk follows before treating a call as reading its whole input.
const MAX_INLINED: usize = 64;

/// Natives that do not read their input, only their arguments.
const OWN_ARGUMENTS_ONLY: [(&str, usize); 6] = [
    ("uuid5", 2),
    ("first_of", 1),
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
pub(super) fn demand_of(term: &Term<&str>) -> Demand {
    let mut walk = Walk::default();
    let read = walk.term(term, &vec![Vec::new()], &Env::default());
    walk.whole(&read);
    if walk.gave_up {
        return Demand::whole();
    }
    walk.demand
}

/// What is in scope: variables, definitions and filter parameters, innermost first.
#[derive(Clone, Default)]
struct Env<'s, 't>(Option<Rc<Link<'s, 't>>>);

struct Link<'s, 't> {
    entry: Entry<'s, 't>,
    next: Env<'s, 't>,
}

enum Entry<'s, 't> {
    /// `$name` (with its `$`) and where its value may be.
    Var(&'s str, Rc<Places>),
    /// A definition and what was in scope where it was defined.
    Def(&'t Def<&'s str>, Env<'s, 't>),
    /// A filter parameter, bound to the caller's argument in the caller's scope.
    Param(&'s str, &'t Term<&'s str>, Env<'s, 't>),
}

impl<'s, 't> Env<'s, 't> {
    fn with(&self, entry: Entry<'s, 't>) -> Env<'s, 't> {
        Env(Some(Rc::new(Link {
            entry,
            next: self.clone(),
        })))
    }

    fn entries(&self) -> impl Iterator<Item = &Entry<'s, 't>> {
        let mut link = self.0.as_deref();
        std::iter::from_fn(move || {
            let current = link?;
            link = current.next.0.as_deref();
            Some(&current.entry)
        })
    }

    fn var(&self, name: &str) -> Places {
        self.entries()
            .find_map(|entry| match entry {
                Entry::Var(n, places) if *n == name => Some(places.as_ref().clone()),
                _ => None,
            })
            .unwrap_or_default()
    }
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

enum Callee<'s, 't> {
    Def(&'t Def<&'s str>, Env<'s, 't>),
    Param(&'t Term<&'s str>, Env<'s, 't>),
}

/// A pattern's variables bound to values of their own.
fn bind_nowhere<'s, 't>(pattern: &Pattern<&'s str>, env: &Env<'s, 't>) -> Env<'s, 't> {
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

/// The text of a string literal without interpolation.
pub(super) fn literal(term: &Term<&str>) -> Option<String> {
    let Term::Str(None, parts) = term else {
        return None;
    };
    let mut text = String::new();
    for part in parts {
        match part {
            StrPart::Str(s) => text.push_str(s),
            StrPart::Char(c) => text.push(*c),
            StrPart::Term(_) => return None,
        }
    }
    Some(text)
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

#[cfg(test)]
mod tests {
    use crate::mapping::expr::Expr;

    /// The paths `code` reads, one a line.
    fn reads(code: &str) -> String {
        let expr = Expr::compile(code).expect("compiles");
        expr.demand().to_string().trim_end().replace('\n', " ")
    }

    #[test]
    fn paths_are_followed_to_what_reads_them() {
        assert_eq!(reads(".a.b"), ".a.b");
        assert_eq!(reads(".a[].b | tostring"), ".a[].b");
        assert_eq!(reads(r#".a["b"]?"#), ".a.b");
        assert_eq!(reads("[.x, .y]"), ".x .y");
        assert_eq!(reads(".a // .b | ascii_downcase"), ".a .b");
        assert_eq!(reads("if .a then .b else .c end"), ".a .b .c");
        assert_eq!(reads("if .a then .b end"), ".");
        assert_eq!(reads(r#"select(.s == "paid") | .id"#), ".id .s (type)");
        assert_eq!(reads("{a, b: .c.d}"), ".a .c.d");
        assert_eq!(reads(r#""\(.a)-\(.b.c)""#), ".a .b.c");
        assert_eq!(reads(".a.b | 1"), ".a.b (type)");
        assert_eq!(reads("$vars.x, $topic, 1, \"s\", []"), ". (type)");
    }

    #[test]
    fn variables_and_definitions_are_followed() {
        assert_eq!(reads(".customer as $c | $c.phone"), ".customer.phone");
        assert_eq!(reads("def f(g): g | .z; f(.a)"), ".a.z");
        assert_eq!(reads("def f($v): $v.k; f(.a)"), ".a.k");
        assert_eq!(reads(".items | map(.price)"), ".items[].price");
        // jaq's `first/1` is a native: it reads its input whole
        assert_eq!(reads(".items | first(.[] | .price)"), ".items");
    }

    #[test]
    fn a_comparison_with_a_scalar_literal_reads_only_the_type() {
        assert_eq!(reads(".a == null"), ".a (type)");
        assert_eq!(
            reads(r#"null != .a, "x" < .b.c, .d >= 1, .e == false"#),
            ".a (type) .b.c (type) .d (type) .e (type)"
        );
        let salekit = "(.s // .b) as $a | if $a == null then null else [$a.x, $a.y] end";
        assert_eq!(reads(salekit), ".b.x .b.y .s.x .s.y");
        // anything else is compared whole, and so is a literal's name taken by a definition
        assert_eq!(reads(".a == .b"), ".a .b");
        assert_eq!(reads(".a == {}"), ".a");
        assert_eq!(reads(r#".a == "\(.b)""#), ".a .b");
        assert_eq!(reads("def null: {}; .a == null"), ".a");
        assert_eq!(reads("def f(null): .a == null; f(1)"), ".a");
    }

    #[test]
    fn natives_read_their_input_whole_unless_known_otherwise() {
        assert_eq!(reads(".a | length"), ".a");
        assert_eq!(reads("keys"), ".");
        assert_eq!(reads(r#"uuid5("ns"; "\(.id)")"#), ".id");
        assert_eq!(reads("first_of([.a, .b.c])"), ".a .b.c");
        assert_eq!(reads(r#"attr("ref")"#), ".meta_data .note_attributes");
        assert_eq!(
            reads(r#".landing_site | url_param("ref")"#),
            ".landing_site"
        );
    }

    #[test]
    fn what_is_not_followed_reads_everything_below() {
        assert_eq!(reads(".."), ".");
        assert_eq!(reads(".a | .."), ".a");
        assert_eq!(reads("reduce .xs[] as $x (0; . + $x)"), ".");
        assert_eq!(reads(".o | reduce .xs[] as $x (0; . + $x)"), ".o");
        assert_eq!(reads("try .a.b catch ."), ".");
        assert_eq!(reads(".a[1:] | .[0].x"), ".a");
        assert_eq!(reads(".a[.k]"), ".a[] .k");
        assert_eq!(reads(".a |= 1"), ".");
        assert_eq!(reads(". as [$x, $y] | $x"), ".");
        assert_eq!(reads("getpath([\"a\"])"), ".");
    }

    #[test]
    fn what_every_value_reads_is_read_of_each_field_too() {
        let mut demand = Expr::compile(".o[] | .x").unwrap().demand().clone();
        demand.merge(Expr::compile(".o.k.y").unwrap().demand());
        let finished = demand.finished().to_string();
        assert_eq!(
            finished.trim_end().replace('\n', " "),
            ".o.k.x .o.k.y .o[].x"
        );
    }
}
