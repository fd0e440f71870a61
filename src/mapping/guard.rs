//! The compile-time guard rails of jq expressions (see [`super::expr`]): refused builtins,
//! recursion through `def`s, and how deep evaluation can recurse.

use std::collections::HashMap;
use std::sync::LazyLock;

use jaq_core::load::parse::{Def, Term};

use super::expr::{MAX_EXPR_DEPTH, PRELUDE};

/// Builtins refused at compile time: name, arity, why.
const REFUSED: [(&str, usize, &str); 12] = [
    ("repeat", 1, "it loops without end"),
    ("while", 2, "it can loop without end"),
    ("until", 2, "it can loop without end"),
    (
        "recurse",
        1,
        "it can loop without end (`..` and `recurse` walk the data and are allowed)",
    ),
    (
        "recurse",
        2,
        "it can loop without end (`..` and `recurse` walk the data and are allowed)",
    ),
    ("combinations", 0, "its output grows exponentially"),
    ("combinations", 1, "its output grows exponentially"),
    ("env", 0, "the process environment holds secrets"),
    ("halt", 0, "it would stop the server"),
    ("halt", 1, "it would stop the server"),
    ("halt_error", 0, "it would stop the server"),
    ("halt_error", 1, "it would stop the server"),
];

/// The compile-time guard rails on the parsed program: refused builtins, recursion, depth.
pub(super) fn check_program(term: &Term<&str>) -> Result<(), String> {
    let mut check = Check {
        prelude: Some(&PRELUDE_DEPTHS),
        ..Check::default()
    };
    let depth = check.term(term)?;
    check.recursion()?;
    if depth > MAX_EXPR_DEPTH {
        return Err(format!(
            "the expression is nested too deeply ({depth} levels, at most {MAX_EXPR_DEPTH}); split it into simpler fields"
        ));
    }
    Ok(())
}

/// Evaluation depth of each standard definition, by name and arity.
static PRELUDE_DEPTHS: LazyLock<HashMap<(&'static str, usize), usize>> = LazyLock::new(|| {
    let mut check = Check::default();
    for def in PRELUDE.iter() {
        let depth = check.def(def).unwrap_or(0);
        check.scope.clear();
        check
            .prelude_so_far
            .insert((def.name, def.args.len()), depth);
    }
    check.prelude_so_far
});

/// Walks a program with jq's scoping (a `def` is visible in its own body, in the `def`s after
/// it and in the term after them; filter parameters shadow definitions) and measures how
/// deep evaluation can recurse: one level per term, plus the body of every called definition.
#[derive(Default)]
struct Check<'s> {
    /// Names in scope, innermost last: name, arity, the definition's id (None: a parameter).
    scope: Vec<(&'s str, usize, Option<usize>)>,
    /// Every definition met: name, arity, depth of its body.
    defs: Vec<(&'s str, usize, usize)>,
    /// Calls between definitions: caller id, callee id.
    calls: Vec<(usize, usize)>,
    /// The definitions whose bodies are being walked, innermost last.
    inside: Vec<usize>,
    /// Set when checking a mapping expression: refuse builtins, use the measured prelude.
    prelude: Option<&'static HashMap<(&'static str, usize), usize>>,
    /// While measuring the prelude itself: the definitions measured so far.
    prelude_so_far: HashMap<(&'s str, usize), usize>,
}

impl<'s> Check<'s> {
    fn def(&mut self, def: &Def<&'s str>) -> Result<usize, String> {
        let id = self.defs.len();
        self.defs.push((def.name, def.args.len(), 0));
        self.scope.push((def.name, def.args.len(), Some(id)));
        let own = self.scope.len();
        let params = def.args.iter().filter(|a| !a.starts_with('$'));
        self.scope.extend(params.map(|a| (*a, 0, None)));
        self.inside.push(id);
        let depth = self.term(&def.body)?;
        self.inside.pop();
        self.scope.truncate(own);
        self.defs[id].2 = depth;
        Ok(depth)
    }

    fn call(&mut self, name: &'s str, arity: usize) -> Result<usize, String> {
        let found = self
            .scope
            .iter()
            .rev()
            .find(|(n, a, _)| *n == name && *a == arity);
        if let Some(&(_, _, def)) = found {
            let Some(id) = def else { return Ok(0) };
            if let Some(&caller) = self.inside.last() {
                self.calls.push((caller, id));
            }
            return Ok(self.defs[id].2);
        }
        let Some(prelude) = self.prelude else {
            return Ok(self
                .prelude_so_far
                .get(&(name, arity))
                .copied()
                .unwrap_or(0));
        };
        if let Some((_, _, why)) = REFUSED.iter().find(|(n, a, _)| *n == name && *a == arity) {
            return Err(format!(
                "`{name}/{arity}` is not allowed in mappings: {why}"
            ));
        }
        Ok(prelude.get(&(name, arity)).copied().unwrap_or(0))
    }

    fn terms<'t>(
        &mut self,
        terms: impl IntoIterator<Item = &'t Term<&'s str>>,
    ) -> Result<usize, String>
    where
        's: 't,
    {
        let mut deepest = 0;
        for term in terms {
            deepest = deepest.max(self.term(term)?);
        }
        Ok(deepest)
    }

    fn term(&mut self, term: &Term<&'s str>) -> Result<usize, String> {
        use jaq_core::load::lex::StrPart;
        use jaq_core::path::Part;
        let inner = match term {
            Term::Id | Term::Recurse | Term::Num(_) | Term::Var(_) | Term::Break(_) => 0,
            Term::Str(format, parts) => {
                let format = format.map_or(Ok(0), |f| self.call(f, 0))?;
                let interpolated = parts.iter().filter_map(|p| match p {
                    StrPart::Term(t) => Some(t),
                    _ => None,
                });
                // the parts are added up: one level each
                parts.len() + format + self.terms(interpolated)?
            }
            Term::Arr(t) => self.terms(t.as_deref())?,
            // the entries are added up: one level each
            Term::Obj(entries) => {
                let terms = entries
                    .iter()
                    .flat_map(|(k, v)| std::iter::once(k).chain(v));
                entries.len() + self.terms(terms)?
            }
            Term::Neg(t) | Term::Label(_, t) => self.term(t)?,
            Term::BinOp(l, _, r) => self.terms([&**l, &**r])?,
            Term::Fold(_, xs, _, args) => self.terms(std::iter::once(&**xs).chain(args))?,
            Term::TryCatch(t, catch) => {
                self.terms(std::iter::once(&**t).chain(catch.as_deref()))?
            }
            Term::IfThenElse(branches, otherwise) => {
                let terms = branches.iter().flat_map(|(c, t)| [c, t]);
                self.terms(terms.chain(otherwise.as_deref()))?
            }
            Term::Path(t, path) => {
                let parts = path.0.iter().flat_map(|(part, _)| match part {
                    Part::Index(i) => vec![i],
                    Part::Range(from, upto) => from.iter().chain(upto).collect(),
                });
                path.0.len() + self.terms(std::iter::once(&**t).chain(parts))?
            }
            Term::Def(defs, body) => {
                let outer = self.scope.len();
                for def in defs {
                    self.def(def)?;
                }
                let depth = self.term(body)?;
                self.scope.truncate(outer);
                depth
            }
            Term::Call(name, args) => self.call(name, args.len())? + self.terms(args)?,
        };
        Ok(1 + inner)
    }

    /// Refuses a cycle among the definitions' calls.
    fn recursion(&self) -> Result<(), String> {
        // 0 = unvisited, 1 = on the current path, 2 = done
        let mut state = vec![0u8; self.defs.len()];
        for start in 0..self.defs.len() {
            let mut stack = vec![(start, 0usize)];
            while let Some(top) = stack.last_mut() {
                let (def, next) = *top;
                top.1 += 1;
                if next == 0 {
                    if state[def] == 2 {
                        stack.pop();
                        continue;
                    }
                    state[def] = 1;
                }
                match self.calls.iter().filter(|(from, _)| *from == def).nth(next) {
                    Some(&(_, to)) if state[to] == 1 => {
                        let (name, arity, _) = self.defs[to];
                        return Err(format!(
                            "`{name}/{arity}` is recursive; recursion is not allowed in mappings (it can loop without end)"
                        ));
                    }
                    Some(&(_, to)) if state[to] == 0 => stack.push((to, 0)),
                    Some(_) => {}
                    None => {
                        state[def] = 2;
                        stack.pop();
                    }
                }
            }
        }
        Ok(())
    }
}
