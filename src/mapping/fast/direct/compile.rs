//! The direct tree of a parsed jq program: each construct it covers becomes a [`Node`];
//! anything else makes the whole program `None`, for jaq to run.

use bytes::Bytes;
use jaq_core::ValT as _;
use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Pattern, Term};
use jaq_core::path::{Opt, Part};
use jaq_json::Val;

use super::{Lit, Native, Node, Step};
use crate::mapping::expr::VARIABLES;
use crate::mapping::fast::demand::literal;

pub(super) fn compile<'s>(term: &Term<&'s str>, locals: &mut Vec<&'s str>) -> Option<Node> {
    let boxed = |t: &Term<&'s str>, locals: &mut Vec<&'s str>| compile(t, locals).map(Box::new);
    Some(match term {
        Term::Id => Node::Id,
        Term::Num(n) => match n.parse::<isize>() {
            Ok(i) => Node::Lit(Lit::Int(i)),
            Err(_) => {
                Val::from_num(n).ok()?;
                Node::Lit(Lit::Num((*n).into()))
            }
        },
        Term::Str(None, parts) => match literal(term) {
            Some(text) => Node::Lit(Lit::Str(Bytes::from(text))),
            None => {
                let mut nodes = Vec::new();
                for part in parts {
                    nodes.push(match part {
                        StrPart::Str(s) => Node::Lit(Lit::Str(Bytes::from(s.to_string()))),
                        StrPart::Char(c) => Node::Lit(Lit::Str(Bytes::from(c.to_string()))),
                        StrPart::Term(t) => {
                            Node::Native(Native::ToString, Vec::new()).after(compile(t, locals)?)
                        }
                    });
                }
                Node::Str(nodes)
            }
        },
        Term::Arr(None) => Node::Lit(Lit::EmptyArr),
        Term::Arr(Some(items)) => Node::Arr(boxed(items, locals)?),
        Term::Obj(entries) if entries.is_empty() => Node::Lit(Lit::EmptyObj),
        Term::Obj(entries) => {
            let mut nodes = Vec::with_capacity(2 * entries.len());
            for (key, value) in entries {
                let (key, value) = match (key, value) {
                    (key, Some(value)) => (compile(key, locals)?, compile(value, locals)?),
                    // `{$x}` is `{x: $x}`
                    (Term::Var(name), None) => {
                        let key = Lit::Str(Bytes::from(name.strip_prefix('$')?.to_string()));
                        (Node::Lit(key), variable(name, locals)?)
                    }
                    // `{a}` is `{a: .a}`
                    (key @ Term::Str(None, _), None) => {
                        let name = Bytes::from(literal(key)?);
                        let value = Node::Path(
                            Box::new(Node::Id),
                            vec![(Step::Key(name.clone()), Opt::Essential)],
                        );
                        (Node::Lit(Lit::Str(name)), value)
                    }
                    _ => return None,
                };
                nodes.extend([key, value]);
            }
            Node::Obj(nodes)
        }
        Term::Neg(t) => Node::Neg(boxed(t, locals)?),
        Term::BinOp(l, op, r) => {
            let l = boxed(l, locals)?;
            match op {
                BinaryOp::Pipe(None) => Node::Pipe(l, boxed(r, locals)?),
                BinaryOp::Pipe(Some(Pattern::Var(name))) => {
                    locals.push(name);
                    let r = boxed(r, locals);
                    locals.pop();
                    Node::Bind(l, r?)
                }
                BinaryOp::Comma => Node::Comma(l, boxed(r, locals)?),
                BinaryOp::Alt => Node::Alt(l, boxed(r, locals)?),
                BinaryOp::And => Node::Logic(l, false, boxed(r, locals)?),
                BinaryOp::Or => Node::Logic(l, true, boxed(r, locals)?),
                BinaryOp::Math(op) => Node::Math(l, *op, boxed(r, locals)?),
                BinaryOp::Cmp(op) => Node::Cmp(l, *op, boxed(r, locals)?),
                _ => return None,
            }
        }
        Term::IfThenElse(branches, otherwise) => {
            let mut node = match otherwise {
                Some(otherwise) => compile(otherwise, locals)?,
                None => Node::Id,
            };
            for (cond, then) in branches.iter().rev() {
                let (cond, then) = (boxed(cond, locals)?, boxed(then, locals)?);
                node = Node::If(cond, then, Box::new(node));
            }
            node
        }
        Term::Var(name) => variable(name, locals)?,
        Term::Call(name, args) => call(name, args, locals)?,
        Term::Path(head, path) => {
            let head = boxed(head, locals)?;
            let mut steps = Vec::with_capacity(path.0.len());
            for (part, opt) in &path.0 {
                let step = match part {
                    Part::Range(None, None) => Step::Each,
                    Part::Index(index) if literal(index).is_some() => {
                        Step::Key(Bytes::from(literal(index)?))
                    }
                    Part::Index(index) => Step::Index(compile(index, locals)?),
                    Part::Range(..) => return None,
                };
                steps.push((step, *opt));
            }
            Node::Path(head, steps)
        }
        _ => return None,
    })
}

fn variable(name: &str, locals: &[&str]) -> Option<Node> {
    if let Some(depth) = locals.iter().rev().position(|local| *local == name) {
        return Some(Node::Local(depth));
    }
    let global = name.strip_prefix('$')?;
    VARIABLES
        .iter()
        .position(|v| *v == global)
        .map(Node::Global)
}

fn call<'s>(name: &str, args: &[Term<&'s str>], locals: &mut Vec<&'s str>) -> Option<Node> {
    let one = |locals: &mut Vec<&'s str>| match args {
        [f] => compile(f, locals).map(Box::new),
        _ => None,
    };
    Some(match (name, args.len()) {
        ("empty", 0) => Node::Empty,
        ("null", 0) => Node::Lit(Lit::Null),
        ("true", 0) => Node::Lit(Lit::Bool(true)),
        ("false", 0) => Node::Lit(Lit::Bool(false)),
        ("select", 1) => Node::Select(one(locals)?),
        ("map", 1) => Node::Map(one(locals)?),
        ("IN", 1) => Node::In(one(locals)?),
        _ => {
            let native = Native::of(name, args.len())?;
            let args = args.iter().map(|a| compile(a, locals));
            Node::Native(native, args.collect::<Option<_>>()?)
        }
    })
}
