//! Running a direct tree: every node calls its continuation once per output, in the order
//! jaq gives them.

use jaq_core::ValT as _;
use jaq_core::ops::Math;
use jaq_core::path::Opt;
use jaq_json::Val;

use super::{Frame, Halt, MAX_REPEAT_BYTES, Node, Out, Run, Step, local};

impl Node {
    /// Runs over `input`, giving every output to `out` in jaq's order.
    pub(super) fn run(
        &self,
        input: Val,
        globals: &[Val],
        frame: Option<&Frame<'_>>,
        out: &mut Out<'_>,
    ) -> Run {
        match self {
            Node::Id => out(input),
            Node::Lit(lit) => out(lit.val()?),
            Node::Global(i) => out(globals.get(*i).ok_or(Halt::Bail)?.clone()),
            Node::Local(depth) => out(local(frame, *depth)?.clone()),
            Node::Path(head, steps) => {
                let mut keys = Vec::new();
                for (step, _) in steps {
                    if let Step::Index(index) = step {
                        keys.push(single(index, &input, globals, frame)?);
                    }
                }
                head.run(input, globals, frame, &mut |value| {
                    walk(steps, &keys, value, out)
                })
            }
            Node::Pipe(l, r) => l.run(input, globals, frame, &mut |x| {
                r.run(x, globals, frame, out)
            }),
            Node::Bind(l, r) => l.run(input.clone(), globals, frame, &mut |x| {
                let bound = Frame {
                    value: x,
                    up: frame,
                };
                r.run(input.clone(), globals, Some(&bound), out)
            }),
            Node::Comma(l, r) => {
                l.run(input.clone(), globals, frame, out)?;
                r.run(input, globals, frame, out)
            }
            Node::Alt(l, r) => {
                let mut any = false;
                l.run(input.clone(), globals, frame, &mut |x| {
                    if x.as_bool() {
                        any = true;
                        out(x)
                    } else {
                        Ok(())
                    }
                })?;
                if any {
                    Ok(())
                } else {
                    r.run(input, globals, frame, out)
                }
            }
            Node::Logic(l, stop, r) => l.run(input.clone(), globals, frame, &mut |x| {
                if x.as_bool() == *stop {
                    out(Val::from(*stop))
                } else {
                    r.run(input.clone(), globals, frame, &mut |y| {
                        out(Val::from(y.as_bool()))
                    })
                }
            }),
            Node::Math(l, op, r) => l.run(input.clone(), globals, frame, &mut |x| {
                r.run(input.clone(), globals, frame, &mut |y| {
                    if *op == Math::Mul {
                        bounded_repetition(&x, &y)?;
                    }
                    out(op.run(x.clone(), y).map_err(|_| Halt::Bail)?)
                })
            }),
            Node::Cmp(l, op, r) => l.run(input.clone(), globals, frame, &mut |x| {
                r.run(input.clone(), globals, frame, &mut |y| {
                    out(Val::from(op.run(&x, &y)))
                })
            }),
            Node::Neg(t) => t.run(input, globals, frame, &mut |x| {
                out((-x).map_err(|_| Halt::Bail)?)
            }),
            Node::If(cond, then, otherwise) => cond.run(input.clone(), globals, frame, &mut |c| {
                let branch = if c.as_bool() { then } else { otherwise };
                branch.run(input.clone(), globals, frame, out)
            }),
            Node::Arr(items) => {
                let mut values = Vec::new();
                items.run(input, globals, frame, &mut |x| {
                    values.push(x);
                    Ok(())
                })?;
                out(Val::from_iter(values))
            }
            Node::Obj(entries) => each_combination(entries, &input, globals, frame, &mut |kvs| {
                let pairs = kvs.chunks_exact(2).map(|kv| match kv {
                    [k @ Val::TStr(_), v] => Ok((k.clone(), v.clone())),
                    _ => Err(Halt::Bail),
                });
                let pairs = pairs.collect::<Result<Vec<_>, _>>()?;
                out(Val::from_map(pairs).map_err(|_| Halt::Bail)?)
            }),
            Node::Str(parts) => each_combination(parts, &input, globals, frame, &mut |texts| {
                let mut written = String::new();
                for text in texts {
                    let Val::TStr(text) = text else {
                        return Err(Halt::Bail);
                    };
                    written.push_str(std::str::from_utf8(text).map_err(|_| Halt::Bail)?);
                }
                out(Val::from(written))
            }),
            Node::Empty => Ok(()),
            Node::Select(cond) => cond.run(input.clone(), globals, frame, &mut |c| {
                if c.as_bool() {
                    out(input.clone())
                } else {
                    Ok(())
                }
            }),
            Node::Map(f) => {
                let mut values = Vec::new();
                for item in input.values() {
                    let item = item.map_err(|_| Halt::Bail)?;
                    f.run(item, globals, frame, &mut |x| {
                        values.push(x);
                        Ok(())
                    })?;
                }
                out(Val::from_iter(values))
            }
            Node::In(s) => {
                let mut found = false;
                let run = s.run(input.clone(), globals, frame, &mut |x| {
                    found = x == input;
                    if found { Err(Halt::Enough) } else { Ok(()) }
                });
                match run {
                    // `Enough` can only come from the closure above: `s` outputs nowhere else
                    Ok(()) | Err(Halt::Enough) => out(Val::from(found)),
                    Err(halt) => Err(halt),
                }
            }
            Node::Native(native, args) => {
                each_combination(args, &input, globals, frame, &mut |values| {
                    out(native.call(input.clone(), values)?)
                })
            }
        }
    }
}

/// Refuses `text * n` (either way round) whose result would exceed [`MAX_REPEAT_BYTES`].
fn bounded_repetition(x: &Val, y: &Val) -> Run {
    let ((Val::TStr(text) | Val::BStr(text), Val::Num(n))
    | (Val::Num(n), Val::TStr(text) | Val::BStr(text))) = (x, y)
    else {
        return Ok(());
    };
    let times = match n {
        jaq_json::Num::Int(i) => u128::try_from(*i).unwrap_or(0),
        // jaq saturates a big integer to the largest `isize`
        jaq_json::Num::BigInt(_) => isize::MAX as u128,
        _ => 0,
    };
    if times.saturating_mul(text.len() as u128) > MAX_REPEAT_BYTES {
        return Err(Halt::Refuse(format!(
            "a string of {} bytes repeated {times} times would be over {} MiB",
            text.len(),
            MAX_REPEAT_BYTES / (1024 * 1024)
        )));
    }
    Ok(())
}

/// The one output of `node`; none or several is a case for jaq.
fn single(
    node: &Node,
    input: &Val,
    globals: &[Val],
    frame: Option<&Frame<'_>>,
) -> Result<Val, Halt> {
    let mut value = None;
    node.run(
        input.clone(),
        globals,
        frame,
        &mut |x| match value.replace(x) {
            None => Ok(()),
            Some(_) => Err(Halt::Bail),
        },
    )?;
    value.ok_or(Halt::Bail)
}

/// Follows `steps` from `value`; `keys` are the values of the `Step::Index`es in order. A
/// step marked `?` drops its own errors (not those of the steps after it), as jaq does.
fn walk(steps: &[(Step, Opt)], keys: &[Val], value: Val, out: &mut Out<'_>) -> Run {
    let Some(((step, opt), rest)) = steps.split_first() else {
        return out(value);
    };
    let optional = matches!(opt, Opt::Optional);
    let (key, keys_after) = match step {
        Step::Key(name) => (Some(Val::TStr(Box::new(name.clone()))), keys),
        Step::Index(_) => {
            let (key, after) = keys.split_first().ok_or(Halt::Bail)?;
            (Some(key.clone()), after)
        }
        Step::Each => (None, keys),
    };
    match key {
        Some(key) => match value.index(&key) {
            Ok(x) => walk(rest, keys_after, x, out),
            Err(_) if optional => Ok(()),
            Err(_) => Err(Halt::Bail),
        },
        None => {
            for x in value.values() {
                match x {
                    Ok(x) => walk(rest, keys_after, x, out)?,
                    Err(_) if optional => {}
                    Err(_) => return Err(Halt::Bail),
                }
            }
            Ok(())
        }
    }
}

/// Calls `call` with one output of each of `nodes`, for every combination in jaq's order:
/// for each output of the first, each of the second, and so on. This is how jaq builds
/// objects (key, then value, entry by entry), interpolated strings and the value arguments
/// of natives (bound with `as`, first outermost).
fn each_combination(
    nodes: &[Node],
    input: &Val,
    globals: &[Val],
    frame: Option<&Frame<'_>>,
    call: &mut dyn FnMut(&[Val]) -> Run,
) -> Run {
    fn from(
        nodes: &[Node],
        input: &Val,
        globals: &[Val],
        frame: Option<&Frame<'_>>,
        values: &mut Vec<Val>,
        call: &mut dyn FnMut(&[Val]) -> Run,
    ) -> Run {
        let Some((node, rest)) = nodes.split_first() else {
            return call(values);
        };
        node.run(input.clone(), globals, frame, &mut |x| {
            values.push(x);
            let done = from(rest, input, globals, frame, values, call);
            values.pop();
            done
        })
    }
    from(
        nodes,
        input,
        globals,
        frame,
        &mut Vec::with_capacity(nodes.len()),
        call,
    )
}
