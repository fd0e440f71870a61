//! Direct evaluation of the jq that mappings are made of, without jaq's interpreter: the
//! expression's syntax tree is turned once into a tree of [`Node`]s, which runs over jaq's
//! own values by calling each node's continuation for each of its outputs.
//!
//! jaq builds a boxed iterator for every term it evaluates; a mapping field such as
//! `.total_price | money` spends most of its time there. Evaluated directly, the same field
//! costs a few lookups and the call of the native function.
//!
//! # Exactly jaq's answer, or none
//!
//! The direct tree covers the constructs order mappings are mostly made of: `.`, literals,
//! variables, paths with `.a`, `.[k]`, `.[]` and `?`, `|`, `as $x |`, `,`, `//`, `and`, `or`,
//! arithmetic and comparison, `if`, `-`, array and object construction, string
//! interpolation, and calls of `empty`, `null`, `true`, `false`, `not`, `select`, `map`,
//! `IN/1`, `tostring`, `length`, `ltrimstr`, `rtrimstr`, `startswith`, `join` and of storehook's
//! functions. Anything else (`try`, `reduce`, slices, updates, local `def`s, other builtins,
//! `@format` strings) is not compiled, and [`crate::mapping::expr::Expr`] runs jaq instead.
//!
//! Where it runs, it follows jaq's definitions of each construct, outputs in the same order
//! (jaq's cartesian products take the left operand in the outer loop, and so does the
//! continuation here). It stops at the first error of any kind with [`Halt::Bail`] and
//! the expression is run again by jaq, which gives the error or, where jq suppresses it,
//! the result: so errors never need to be reproduced here, and a difference can only be a
//! wrong value. A differential property test compares the two on generated programs. The
//! one deliberate difference: a string repeated past [`MAX_REPEAT_BYTES`] is an error here,
//! where jaq's allocation would abort the process.
//!
//! jaq's values hold `Rc`s and expressions are shared between threads, so literals are kept
//! as [`Lit`] and made into values as they are used (jaq does the same).

use bytes::Bytes;
use jaq_core::ValT as _;
use jaq_core::load::parse::Term;
use jaq_core::ops::{Cmp, Math};
use jaq_core::path::Opt;
use jaq_json::Val;
use jaq_std::ValT as _;

use crate::mapping::functions;

use compile::compile;

mod compile;
mod run;

/// Deepest stack a direct tree may need, in [`Node::depth`]'s units (about one node's
/// frames each). An output is handed on while everything that led to it is still on the
/// stack: the stages of a pipe, both operands of an operator, every entry of an object or
/// part of a string before it. So the depth adds up along a program's length, where the
/// guard rails in [`crate::mapping::expr`] count nesting only; deeper trees run in jaq, whose
/// iterators nest only as deep as the program. A debug build overflowed a 2 MiB stack (a
/// tokio worker's) at about 1,100 units (an object of 40 interpolated strings); the deepest
/// shipped mapping expression (Scalef's `conversion_parts`) needs between 70 and 100.
const MAX_DEPTH: usize = 256;

/// Longest string `"…" * n` may make, in bytes. jaq allocates the repetition at once, and
/// a failed allocation aborts the process (`"x" * .quantity` with a quantity of 10¹⁹ in the
/// webhook): here it is an error instead, the one place this module answers differently
/// from jaq.
pub(super) const MAX_REPEAT_BYTES: u128 = 16 * 1024 * 1024;

/// Why a direct evaluation stopped early.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Halt {
    /// Something jaq has to answer: an error, or a case not reproduced here.
    Bail,
    /// An error jaq would not survive: the expression fails with this message.
    Refuse(String),
    /// The caller has the outputs it wanted.
    Enough,
}

type Run = Result<(), Halt>;

/// Where each output goes.
type Out<'o> = dyn FnMut(Val) -> Run + 'o;

/// A compiled expression, evaluated without jaq. Send + Sync.
#[derive(Debug)]
pub(super) struct Direct(Node);

/// A literal value, made into a jaq value where it is used.
#[derive(Debug)]
enum Lit {
    Null,
    Bool(bool),
    Int(isize),
    Num(Box<str>),
    Str(Bytes),
    EmptyArr,
    EmptyObj,
}

#[derive(Debug)]
enum Node {
    Id,
    Lit(Lit),
    /// `$topic`, `$source`, `$headers`, `$vars`, by their index in [`VARIABLES`].
    Global(usize),
    /// A variable bound by `as`: 0 is the innermost.
    Local(usize),
    Path(Box<Node>, Vec<(Step, Opt)>),
    Pipe(Box<Node>, Box<Node>),
    /// `l as $x | r`
    Bind(Box<Node>, Box<Node>),
    Comma(Box<Node>, Box<Node>),
    Alt(Box<Node>, Box<Node>),
    /// `and` (stops on false) and `or` (stops on true)
    Logic(Box<Node>, bool, Box<Node>),
    Math(Box<Node>, Math, Box<Node>),
    Cmp(Box<Node>, Cmp, Box<Node>),
    Neg(Box<Node>),
    If(Box<Node>, Box<Node>, Box<Node>),
    Arr(Box<Node>),
    /// `{k1: v1, k2: v2, …}` as `[k1, v1, k2, v2, …]`.
    Obj(Vec<Node>),
    /// String interpolation: literal parts and terms whose outputs are written as text.
    Str(Vec<Node>),
    Empty,
    Select(Box<Node>),
    Map(Box<Node>),
    /// `IN(s)`: whether an output of `s` equals the input, stopping at the first that does
    /// (jq's `any(s == .; .)`).
    In(Box<Node>),
    /// A native function whose arguments are values (jaq's `v(n)`), run over the input.
    Native(Native, Vec<Node>),
}

#[derive(Debug)]
enum Step {
    Key(Bytes),
    Index(Node),
    Each,
}

#[derive(Debug, Clone, Copy)]
enum Native {
    Not,
    ToString,
    Length,
    LtrimStr,
    RtrimStr,
    StartsWith,
    Join,
    FirstOf,
    Attr,
    UrlParam,
    Money,
    MoneySum,
    EpochMs,
    LocalTime,
    Phone,
    Uuid5,
    CurrencyRate,
    InCurrency,
    InZone,
    Allocate,
}

impl Native {
    fn of(name: &str, arity: usize) -> Option<Native> {
        Some(match (name, arity) {
            ("not", 0) => Native::Not,
            ("tostring", 0) => Native::ToString,
            ("length", 0) => Native::Length,
            ("ltrimstr", 1) => Native::LtrimStr,
            ("rtrimstr", 1) => Native::RtrimStr,
            ("startswith", 1) => Native::StartsWith,
            ("join", 1) => Native::Join,
            ("first_of", 1) => Native::FirstOf,
            ("attr", 1) => Native::Attr,
            ("url_param", 1) => Native::UrlParam,
            ("money", 0) => Native::Money,
            ("money_sum", 0) => Native::MoneySum,
            ("epoch_ms", 0) => Native::EpochMs,
            ("local_time", 2) => Native::LocalTime,
            ("phone", 2) => Native::Phone,
            ("uuid5", 2) => Native::Uuid5,
            ("currency_rate", 2) => Native::CurrencyRate,
            ("in_currency", 3) => Native::InCurrency,
            ("in_zone", 1) => Native::InZone,
            ("allocate", 2) => Native::Allocate,
            _ => return None,
        })
    }

    fn call(self, input: Val, args: &[Val]) -> Result<Val, Halt> {
        let ok = |r: jaq_core::ValR<Val>| r.map_err(|_| Halt::Bail);
        match (self, args) {
            (Native::Not, []) => Ok(Val::from(!input.as_bool())),
            (Native::ToString, []) => Ok(input.into_string()),
            (Native::Length, []) => match &input {
                Val::Null => Ok(Val::from(0usize)),
                Val::TStr(s) => Ok(Val::from(String::from_utf8_lossy(s).chars().count())),
                Val::Arr(items) => Ok(Val::from(items.len())),
                Val::Obj(entries) => Ok(Val::from(entries.len())),
                _ => Err(Halt::Bail),
            },
            (Native::LtrimStr | Native::RtrimStr, [fix]) => {
                let (Some(text), Some(fix)) = (input.as_bytes(), fix.as_bytes()) else {
                    return Err(Halt::Bail);
                };
                let rest = match self {
                    Native::LtrimStr => text.strip_prefix(fix),
                    _ => text.strip_suffix(fix),
                };
                Ok(rest.map_or_else(|| input.clone(), |rest| input.as_sub_str(rest)))
            }
            (Native::StartsWith, [prefix]) => match (input.as_bytes(), prefix.as_bytes()) {
                (Some(text), Some(prefix)) => Ok(Val::from(text.starts_with(prefix))),
                _ => Err(Halt::Bail),
            },
            (Native::Join, [separator]) => ok(functions::join(input, separator)),
            (Native::FirstOf, [values]) => Ok(functions::first_of(values.clone())),
            (Native::Attr, [name]) => Ok(functions::attr(&input, name)),
            (Native::UrlParam, [name]) => ok(functions::url_param(&input, name)),
            (Native::Money, []) => ok(functions::money(&input)),
            (Native::MoneySum, []) => ok(functions::money_sum(input)),
            (Native::EpochMs, []) => ok(functions::epoch_ms(&input)),
            (Native::LocalTime, [zone, format]) => ok(functions::local_time(&input, zone, format)),
            (Native::Phone, [region, format]) => ok(functions::phone(&input, region, format)),
            (Native::Uuid5, [namespace, name]) => ok(functions::uuid5(namespace, name)),
            (Native::CurrencyRate, [from, to]) => ok(functions::currency_rate(from, to)),
            (Native::InZone, [zone]) => ok(functions::in_zone(&input, zone)),
            (Native::Allocate, [amount, currency]) => {
                ok(functions::allocate(&input, amount, currency))
            }
            (Native::InCurrency, [amount, from, to]) => {
                ok(functions::in_currency(amount, from, to))
            }
            _ => Err(Halt::Bail),
        }
    }
}

impl Lit {
    fn val(&self) -> Result<Val, Halt> {
        Ok(match self {
            Lit::Null => Val::Null,
            Lit::Bool(b) => Val::Bool(*b),
            Lit::Int(i) => Val::from(*i),
            Lit::Num(n) => Val::from_num(n).map_err(|_| Halt::Bail)?,
            Lit::Str(s) => Val::TStr(Box::new(s.clone())),
            Lit::EmptyArr => Val::from_iter(std::iter::empty()),
            Lit::EmptyObj => Val::from_map(std::iter::empty()).map_err(|_| Halt::Bail)?,
        })
    }
}

/// Variables bound by `as`, innermost first.
struct Frame<'f> {
    value: Val,
    up: Option<&'f Frame<'f>>,
}

fn local<'f>(frame: Option<&'f Frame<'f>>, depth: usize) -> Result<&'f Val, Halt> {
    let mut frame = frame.ok_or(Halt::Bail)?;
    for _ in 0..depth {
        frame = frame.up.ok_or(Halt::Bail)?;
    }
    Ok(&frame.value)
}

impl Direct {
    /// The direct tree of `term`, or `None` when it uses something not covered here.
    pub(super) fn compile(term: &Term<&str>) -> Option<Direct> {
        let node = compile(term, &mut Vec::new())?;
        (node.depth() <= MAX_DEPTH).then_some(Direct(node))
    }

    /// Runs over `input` with the global variables' values (in [`VARIABLES`]' order),
    /// giving every output to `out` in jaq's order.
    pub(super) fn run(&self, input: &Val, globals: &[Val], out: &mut Out<'_>) -> Run {
        self.0.run(input.clone(), globals, None, out)
    }
}

impl Node {
    /// How deep the stack gets while this node runs, up to and including the call that hands
    /// on an output, in nodes: what runs inside a continuation adds to what called it.
    fn depth(&self) -> usize {
        let sum =
            |nodes: &mut dyn Iterator<Item = &Node>| nodes.map(|n| n.depth() + 1).sum::<usize>();
        1 + match self {
            Node::Id | Node::Lit(_) | Node::Global(_) | Node::Local(_) | Node::Empty => 0,
            Node::Path(head, steps) => {
                let indices = steps.iter().map(|(step, _)| match step {
                    Step::Index(index) => index.depth(),
                    Step::Key(_) | Step::Each => 0,
                });
                indices.max().unwrap_or(0).max(head.depth() + steps.len())
            }
            Node::Pipe(l, r) | Node::Bind(l, r) | Node::Logic(l, _, r) => l.depth() + r.depth(),
            Node::Math(l, _, r) | Node::Cmp(l, _, r) => l.depth() + r.depth(),
            Node::Comma(l, r) | Node::Alt(l, r) => l.depth().max(r.depth()),
            Node::If(cond, then, otherwise) => cond.depth() + then.depth().max(otherwise.depth()),
            Node::Neg(t) | Node::Arr(t) | Node::Select(t) | Node::Map(t) | Node::In(t) => t.depth(),
            Node::Obj(parts) | Node::Str(parts) | Node::Native(_, parts) => sum(&mut parts.iter()),
        }
    }

    /// `first | self`
    fn after(self, first: Node) -> Node {
        Node::Pipe(Box::new(first), Box::new(self))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::mapping::expr::{Bindings, Expr, Input, Limits};

    /// Runs `code` over `{a, b, c}` on a thread with a tokio worker's stack (2 MiB).
    fn run_on_small_stack(code: String) -> (bool, Result<Vec<serde_json::Value>, String>) {
        std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                let expr = Expr::compile(&code).unwrap();
                let input = Input::from_value(&json!({"a": 1, "b": null, "c": "x"}));
                let bindings = Bindings::new("t", "s", &json!({}), &json!({}));
                (
                    expr.is_direct(),
                    expr.eval(&input, &bindings, &Limits::default()),
                )
            })
            .unwrap()
            .join()
            .unwrap()
    }

    /// `"…" * n` past the bound is an error, not an allocation that aborts the process
    /// (jaq's answer here: "memory allocation of 9223372036854775807 bytes failed").
    #[test]
    fn a_huge_repetition_is_an_error() {
        let input = Input::from_value(&json!({"n": 12345678901234567890u64, "m": 3}));
        let bindings = Bindings::new("t", "s", &json!({}), &json!({}));
        let expr = Expr::compile(r#""ab" * .n"#).unwrap();
        assert!(expr.is_direct());
        let error = expr
            .eval(&input, &bindings, &Limits::default())
            .unwrap_err();
        assert!(
            error.contains("repeated 9223372036854775807 times"),
            "{error}"
        );
        let expr = Expr::compile(r#".m * "ab""#).unwrap();
        let ok = expr.eval(&input, &bindings, &Limits::default());
        assert_eq!(ok, Ok(vec![json!("ababab")]));
    }

    /// Long programs whose continuations would pile up past the stack run in jaq. Without
    /// the depth bound, both abort the test process with a stack overflow in a debug build.
    #[test]
    fn long_programs_run_in_jaq_instead_of_overflowing_the_stack() {
        let part = r#""\(.a)-\(.b // "")/\(.c | tostring)""#;
        let entries: Vec<String> = (0..64).map(|i| format!("k{i}: {part}")).collect();
        let (direct, wide) = run_on_small_stack(format!("{{{}}}", entries.join(", ")));
        assert!(!direct);
        assert_eq!(wide.unwrap()[0]["k63"], json!("1-/x"));

        let text = format!("\"{}\"", r"\(1)".repeat(64));
        let piped = [text.as_str(); 4].join(" | ");
        let (direct, piped) = run_on_small_stack(piped);
        assert!(!direct);
        assert_eq!(piped.unwrap(), vec![json!("1".repeat(64))]);

        let (direct, short) = run_on_small_stack(format!("{{{}}}", entries[..4].join(", ")));
        assert!(direct);
        assert_eq!(short.unwrap()[0]["k3"], json!("1-/x"));
    }
}
