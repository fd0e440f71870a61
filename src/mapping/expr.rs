//! jq expressions for mapping files: compiled once with jaq (core, std and json definitions
//! plus [`super::functions`]), then evaluated over a webhook body parsed once ([`Input`]), with
//! `$topic`, `$source`, `$headers` and `$vars` converted once ([`Bindings`]).
//!
//! # Guard rails
//!
//! jaq has no resource limits of its own, and a mapping is written by an integrator, not by
//! us: a runaway expression must end in an error, never in a crash or a hang.
//!
//! - **Long code** (compile): at most [`MAX_CODE_BYTES`]. jaq's parser and compiler recurse on
//!   the code's nesting, so compilation runs on a helper thread whose stack (256 MiB of
//!   virtual memory, committed only as used) fits any code that long.
//! - **Deep evaluation** (compile): evaluation runs on the caller's stack (2 MiB on a tokio
//!   worker) and recurses once per nested term. A program's depth, counting the bodies of the
//!   definitions it calls (standard ones included), must stay within [`MAX_EXPR_DEPTH`]. A
//!   debug build overflows 2 MiB from about 300 levels of the costliest constructs; the
//!   shipped mappings measure under 30.
//! - **Recursion** (compile): a `def` calling itself, directly or through other `def`s. Order
//!   mappings never need it, and it is how jq loops forever (`def f: f; f`) or overflows the
//!   stack (`def f: 1 + f; f`).
//! - **Unbounded builtins** (compile): `repeat`, `while`, `until`, `recurse(f)`,
//!   `recurse(f; cond)` (`..` and `recurse`, which walk the data, stay allowed),
//!   `combinations` (exponential); `env` (the environment holds secrets) and `halt`,
//!   `halt_error`. A halt that got through would be an error anyway: jaq's `unwrap_valr`,
//!   which exits the process on halt, is not used.
//! - **Long ranges** (eval): `range` draws on a budget of [`RANGE_BUDGET`] values per
//!   evaluation, so `last(range(1e18))` fails at once. The budget is small because values
//!   nested by a loop deepen the recursion of `tojson` and friends too.
//! - **Deep input** (parse): [`Input::parse`] and `fromjson` read with serde_json, which
//!   refuses nesting deeper than 128 levels instead of overflowing the stack. A body parsed
//!   only as far as the mappings read it ([`Input::parse_projected`]) is refused so where
//!   it is built; the parts skipped are checked without recursion.
//! - **Big output** (eval): more than [`Limits::max_outputs`] values, more than
//!   [`Limits::max_output_bytes`] of JSON in all, or nesting deeper than [`Limits::max_depth`].
//! - **Panics** inside the engine (a capacity overflow, say) are caught and become errors.
//! - **String repetition** (eval): `"x" * n` allocates its result at once, and an allocation
//!   that fails aborts the process; `n` may come from the webhook. Where [`super::fast`]
//!   evaluates the expression, a result over 16 MiB is an error instead.
//!
//! What remains possible is deliberate abuse the checks cannot see statically: a repetition
//! as above in an expression that jaq evaluates, or a `reduce` over a large input array that
//! nests or doubles its value at each step. Nested iteration over the input
//! is polynomial in its size, which the caller bounds.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::LazyLock;

use jaq_core::data::JustLut;
use jaq_core::load::parse::Def;
use jaq_core::load::{self, Arena, File, Loader, lex};
use jaq_core::{Compiler, Ctx, Vars};
use jaq_json::Val;
use serde_json::Value;

use super::fast::{Demand, Fast, parse_projected};
use super::functions;
use super::guard::check_program;
use convert::{collect, from_json};
use messages::{compile_errors, exception_message, load_errors};

mod convert;
mod messages;

/// Variables bound in every expression: $topic, $source, $headers, $vars (in this order).
pub const VARIABLES: [&str; 4] = ["topic", "source", "headers", "vars"];

/// Longest expression accepted, in bytes.
pub const MAX_CODE_BYTES: usize = 8 * 1024;
/// Stack of the thread that parses and compiles an expression: jaq's parser and compiler
/// recurse on the code's nesting, which [`MAX_CODE_BYTES`] bounds.
const COMPILE_STACK_BYTES: usize = 256 * 1024 * 1024;
/// Deepest evaluation accepted: one level per term, plus the bodies of called definitions.
pub const MAX_EXPR_DEPTH: usize = 96;
/// Values `range` may produce in one evaluation, all calls together.
pub const RANGE_BUDGET: u64 = 1_000;

type Data = JustLut<Val>;

/// The standard definitions but those [`functions::REPLACED`], and ours, parsed once per
/// process.
pub(super) static PRELUDE: LazyLock<Vec<Def>> = LazyLock::new(|| {
    let ours = load::parse(functions::DEFS, |p| p.defs()).unwrap_or_default();
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs())
        .chain(ours);
    defs.filter(|def| !functions::REPLACED.contains(&(def.name, def.args.len())))
        .collect()
});

/// A JSON document parsed once per webhook and shared by all expressions evaluated over it.
pub struct Input(Val);

impl Input {
    /// Parses JSON bytes (the raw webhook body). Error: a short message.
    pub fn parse(bytes: &[u8]) -> Result<Input, String> {
        // serde_json refuses nesting deeper than 128 levels instead of overflowing the stack
        serde_json::from_slice(bytes)
            .map(Input)
            .map_err(|e| format!("the body is not valid JSON: {e}"))
    }

    /// Parses JSON bytes, building only what `demand` reads (see [`super::fast`]).
    pub(super) fn parse_projected(bytes: &[u8], demand: &Demand) -> Result<Input, String> {
        parse_projected(bytes, demand)
            .map(Input)
            .map_err(|e| format!("the body is not valid JSON: {e}"))
    }

    /// Converts a JSON value; levels deeper than `MAX_INPUT_DEPTH` become null.
    pub fn from_value(value: &Value) -> Input {
        Input(from_json(value, 0))
    }
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Input").finish_non_exhaustive()
    }
}

/// The bound variables' values for one webhook, converted once and reused by every expression
/// (as jaq's variables, and in `VARIABLES`' order for the direct evaluator).
pub struct Bindings(Vars<Val>, [Val; 4]);

impl Bindings {
    pub fn new(topic: &str, source: &str, headers: &Value, vars: &Value) -> Bindings {
        Bindings::of([
            Val::from(topic.to_string()),
            Val::from(source.to_string()),
            from_json(headers, 0),
            from_json(vars, 0),
        ])
    }

    /// The same `$topic`, `$source` and `$headers` (not converted again), with `vars`.
    pub fn with_vars(&self, vars: &Value) -> Bindings {
        let [topic, source, headers, _] = &self.1;
        Bindings::of([
            topic.clone(),
            source.clone(),
            headers.clone(),
            from_json(vars, 0),
        ])
    }

    fn of(values: [Val; 4]) -> Bindings {
        Bindings(Vars::new(values.clone()), values)
    }
}

impl fmt::Debug for Bindings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Bindings").finish_non_exhaustive()
    }
}

/// Bounds on what one evaluation may produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_outputs: usize,
    /// All outputs of one evaluation together, as JSON text (approximately: numbers count 8).
    pub max_output_bytes: usize,
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_outputs: 1000,
            max_output_bytes: 1024 * 1024,
            max_depth: 64,
        }
    }
}

/// A compiled jq expression (jaq + jaq-std + jaq-json definitions + our functions). Send + Sync, compiled once.
pub struct Expr {
    filter: jaq_core::Filter<Data>,
    /// What it may read of its input, and its faster evaluation where it has one.
    fast: Fast,
}

const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<Expr>();
};

/// Why an expression does not compile: a readable message, and the byte offset in the code
/// of the part it stops at, where jaq gives one (a syntax error, an undefined name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CompileError {
    pub message: String,
    pub offset: Option<usize>,
}

impl From<String> for CompileError {
    fn from(message: String) -> Self {
        CompileError {
            message,
            offset: None,
        }
    }
}

impl From<CompileError> for String {
    fn from(error: CompileError) -> Self {
        error.message
    }
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expr").finish_non_exhaustive()
    }
}

impl Expr {
    /// Compiles `code`. Errors (parse errors, undefined functions/variables, refused
    /// constructs) come back as a readable message that quotes the offending part, with
    /// where in `code` that part starts when jaq says.
    pub fn compile(code: &str) -> Result<Expr, CompileError> {
        if code.len() > MAX_CODE_BYTES {
            let size = code.len();
            return Err(format!(
                "the expression is {size} bytes, over the {MAX_CODE_BYTES} allowed"
            )
            .into());
        }
        std::thread::scope(|scope| {
            let compiler = std::thread::Builder::new()
                .name("jq-compile".into())
                .stack_size(COMPILE_STACK_BYTES)
                .spawn_scoped(scope, || {
                    let filter = compile_in(&Arena::default(), code)?;
                    // it compiled, so it lexes and parses
                    let tokens = lex::Lexer::new(code)
                        .lex()
                        .map_err(|_| CompileError::from("syntax error".to_string()))?;
                    let term = load::parse::Parser::new(&tokens)
                        .parse(|p| p.term())
                        .map_err(|_| CompileError::from("syntax error".to_string()))?;
                    check_program(&term)?;
                    let fast = Fast::compile(&term);
                    Ok(Expr { filter, fast })
                })
                .map_err(|e| format!("cannot start the jq compiler: {e}"))?;
            compiler.join().unwrap_or_else(|_| {
                Err("the jq compiler failed on this expression (panic caught)"
                    .to_string()
                    .into())
            })
        })
    }

    /// Whether it runs without jaq's interpreter (see [`super::fast`]).
    #[cfg(test)]
    pub(super) fn is_direct(&self) -> bool {
        self.fast.is_direct()
    }

    /// What the expression may read of its input (see [`super::fast`]).
    pub(super) fn demand(&self) -> &Demand {
        self.fast.demand()
    }

    /// Runs over `input` with `bindings`; collects at most `limits.max_outputs` outputs
    /// converted to JSON. A jq runtime error (e.g. `error("x")`, `.a.b` on a number) → Err.
    pub fn eval(
        &self,
        input: &Input,
        bindings: &Bindings,
        limits: &Limits,
    ) -> Result<Vec<Value>, String> {
        self.run(input, bindings, limits, false)
    }

    /// Convenience: the first output, or Ok(None) when the expression yields nothing. Later
    /// outputs are not computed.
    pub fn eval_first(
        &self,
        input: &Input,
        bindings: &Bindings,
        limits: &Limits,
    ) -> Result<Option<Value>, String> {
        Ok(self.run(input, bindings, limits, true)?.pop())
    }

    fn run(
        &self,
        input: &Input,
        bindings: &Bindings,
        limits: &Limits,
        first_only: bool,
    ) -> Result<Vec<Value>, String> {
        let run = || {
            self.run_direct(input, bindings, limits, first_only)
                .unwrap_or_else(|| self.run_jaq(input, bindings, limits, first_only))
        };
        catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|_| {
            Err("the jq engine failed on this expression (panic caught)".into())
        })
    }

    /// The outputs computed by [`Fast::run`], or `None` for jaq to compute them.
    pub(super) fn run_direct(
        &self,
        input: &Input,
        bindings: &Bindings,
        limits: &Limits,
        first_only: bool,
    ) -> Option<Result<Vec<Value>, String>> {
        let (mut outputs, mut size) = (Vec::new(), 0);
        let run = self.fast.run(&input.0, &bindings.1, &mut |value| {
            collect(&mut outputs, &value, limits, &mut size).map(|()| !first_only)
        })?;
        Some(run.map(|()| outputs))
    }

    pub(super) fn run_jaq(
        &self,
        input: &Input,
        bindings: &Bindings,
        limits: &Limits,
        first_only: bool,
    ) -> Result<Vec<Value>, String> {
        functions::set_range_budget(RANGE_BUDGET);
        let ctx = Ctx::<Data>::new(&self.filter.lut, bindings.0.clone());
        let (mut outputs, mut size) = (Vec::new(), 0);
        for output in self.filter.id.run((ctx, input.0.clone())) {
            let value = output.map_err(exception_message)?;
            collect(&mut outputs, &value, limits, &mut size)?;
            if first_only {
                break;
            }
        }
        Ok(outputs)
    }
}

fn compile_in<'s>(arena: &'s Arena, code: &'s str) -> Result<jaq_core::Filter<Data>, CompileError> {
    let prelude = PRELUDE.iter().cloned();
    let modules = Loader::new(prelude)
        .load(arena, File { code, path: () })
        .map_err(|errors| load_errors(code, errors.into_iter().map(|(_, e)| e)))?;
    let globals = VARIABLES.map(|name| &**arena.alloc(format!("${name}")));
    Compiler::default()
        .with_global_vars(globals)
        .with_funs(natives().map(|(name, args, f)| (name as &'s str, args, f)))
        .compile(modules)
        .map_err(|errors| compile_errors(code, errors.into_iter().flat_map(|(_, e)| e)))
}

/// jaq's natives but those [`functions::REPLACED`], then the replacements and ours.
fn natives() -> impl Iterator<Item = jaq_core::native::Fun<Data>> {
    jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs())
        .filter(|(name, args, _)| !functions::REPLACED.contains(&(*name, args.len())))
        .chain(functions::replacements())
        .chain(functions::funs())
}

#[cfg(test)]
pub(super) mod tests {
    use super::messages::MAX_MESSAGE_BYTES;
    use super::*;
    use serde_json::json;

    /// Compiles `code` and evaluates it over `input` with fixed bindings.
    pub(in super::super) fn run(code: &str, input: Value) -> Result<Vec<Value>, String> {
        let vars = json!({"zone": "Asia/Ho_Chi_Minh", "names": ["click_id", "aff_sid"]});
        let bindings = Bindings::new("orders/paid", "haravan", &json!({"x-org": "1"}), &vars);
        let expr = Expr::compile(code)?;
        expr.eval(&Input::from_value(&input), &bindings, &Limits::default())
    }

    /// The one output of `code` over `input`.
    pub(in super::super) fn one(code: &str, input: Value) -> Value {
        let mut values = run(code, input).unwrap_or_else(|e| panic!("{code}: {e}"));
        assert_eq!(values.len(), 1, "{code} yields {values:?}");
        values.remove(0)
    }

    fn compile_error(code: &str) -> String {
        Expr::compile(code)
            .err()
            .unwrap_or_else(|| panic!("{code} compiled"))
            .message
    }

    #[test]
    fn variables_are_bound_in_order() {
        let got = one("[$topic, $source, $headers, $vars.zone]", Value::Null);
        assert_eq!(
            got,
            json!(["orders/paid", "haravan", {"x-org": "1"}, "Asia/Ho_Chi_Minh"])
        );
        assert_eq!(VARIABLES, ["topic", "source", "headers", "vars"]);
    }

    #[test]
    fn parses_bodies_once_and_keeps_numbers() {
        let input =
            Input::parse(br#"{"id": 820982911946154508, "total": 1180000.0000, "a": [1, "x"]}"#)
                .expect("valid JSON");
        let expr = Expr::compile("[.id, .total, .a]").expect("compiles");
        let bindings = Bindings::new("t", "s", &Value::Null, &Value::Null);
        let got = expr.eval(&input, &bindings, &Limits::default());
        assert_eq!(
            got,
            Ok(vec![json!([820982911946154508u64, 1180000.0, [1, "x"]])])
        );
        assert!(
            Input::parse(b"{\"a\": ")
                .unwrap_err()
                .contains("not valid JSON")
        );
    }

    #[test]
    fn first_output_and_nothing() {
        let expr = Expr::compile(".[]").expect("compiles");
        let bindings = Bindings::new("t", "s", &Value::Null, &Value::Null);
        let limits = Limits::default();
        let first = expr.eval_first(&Input::from_value(&json!([1, 2])), &bindings, &limits);
        assert_eq!(first, Ok(Some(json!(1))));
        let none = expr.eval_first(&Input::from_value(&json!([])), &bindings, &limits);
        assert_eq!(none, Ok(None));
        assert_eq!(run("empty", Value::Null), Ok(vec![]));
    }

    #[test]
    fn runtime_errors_are_messages() {
        assert_eq!(run(r#"error("x")"#, Value::Null), Err("x".into()));
        assert_eq!(
            run(".a.b", json!({"a": 5})),
            Err(r#"cannot index 5 with "b""#.into())
        );
        assert_eq!(
            run(r#"error({"a": 1})"#, Value::Null),
            Err(r#"{"a":1}"#.into())
        );
        let long = run(r#""x" * 1000 | error"#, Value::Null).unwrap_err();
        assert!(
            long.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8(),
            "{}",
            long.len()
        );
    }

    #[test]
    fn compile_errors_quote_the_culprit() {
        assert_eq!(
            compile_error(r#"phon("VN"; "e164")"#),
            "undefined function `phon/2`"
        );
        assert!(compile_error("$foo").starts_with("undefined variable `$foo`"));
        assert!(compile_error(".a |").starts_with("syntax error"));
        assert!(
            compile_error("{a: 1").contains("closing brace"),
            "{}",
            compile_error("{a: 1")
        );
        assert!(compile_error(r#"import "x" as x; ."#).contains("not supported"));
    }

    #[test]
    fn recursion_is_refused() {
        for code in [
            "def f: f; f",
            "def f: 1 + f; f",
            "def f(g): g | f(g); f(.)",
            "def a: def b: a; b; a",
            "def f: [f]; 1",
        ] {
            assert!(compile_error(code).contains("recursive"), "{code}");
        }
        assert_eq!(
            one("def f: . + 1; def g: f | f; 1 | g", Value::Null),
            json!(3)
        );
        assert_eq!(one("def f(g): [g, g]; f(1)", Value::Null), json!([1, 1]));
    }

    #[test]
    fn unbounded_builtins_are_refused() {
        for code in [
            "repeat(1)",
            "[limit(5; repeat(1))]",
            "0 | until(false; .)",
            "0 | [while(true; . + 1)]",
            "0 | recurse(. + 1)",
            "[[1, 2], [3]] | combinations",
            "env",
            "halt",
            "halt_error(1)",
            "$ENV",
            "input",
        ] {
            assert!(Expr::compile(code).is_err(), "{code}");
        }
        assert_eq!(one("[[1, [2]] | .. | numbers]", Value::Null), json!([1, 2]));
        assert_eq!(one("def repeat(f): f; repeat(1)", Value::Null), json!(1));
    }

    #[test]
    fn ranges_draw_on_a_budget() {
        let err = run("last(range(1e18))", Value::Null).unwrap_err();
        assert!(err.contains("too many values"), "{err}");
        assert!(run("[range(600) as $a | range(600)] | length", Value::Null).is_err());
        assert!(run("reduce range(1e9) as $i (null; [.]) | tojson", Value::Null).is_err());
        assert_eq!(
            one("[range(3), range(1; 10; 4)]", Value::Null),
            json!([0, 1, 2, 1, 5, 9])
        );
        assert_eq!(one("[range(1000)] | length", Value::Null), json!(1000));
    }

    #[test]
    fn outputs_are_bounded() {
        let limits = Limits {
            max_outputs: 3,
            max_output_bytes: 100,
            max_depth: 4,
        };
        let bindings = Bindings::new("t", "s", &Value::Null, &Value::Null);
        let input = Input::from_value(&Value::Null);
        let eval = |code: &str| {
            Expr::compile(code)
                .map_err(String::from)
                .and_then(|e| e.eval(&input, &bindings, &limits))
        };
        assert_eq!(eval("1, 2, 3"), Ok(vec![json!(1), json!(2), json!(3)]));
        assert!(
            eval("1, 2, 3, 4")
                .unwrap_err()
                .contains("more than 3 values")
        );
        assert!(eval(r#""x" * 200"#).unwrap_err().contains("bytes"));
        assert!(eval("[[[[[1]]]]]").unwrap_err().contains("nested deeper"));
        assert_eq!(eval("[[[[1]]]]"), Ok(vec![json!([[[[1]]]])]));
    }

    #[test]
    fn deep_or_long_code_is_refused_without_overflowing() {
        let deep = format!("{}1{}", "[".repeat(3000), "]".repeat(3000));
        assert!(compile_error(&deep).contains("nested too deeply"));
        let chain = format!("1{}", " + 1".repeat(1500));
        assert!(compile_error(&chain).contains("nested too deeply"));
        let long = format!("1{}", " ".repeat(MAX_CODE_BYTES));
        assert!(compile_error(&long).contains("bytes"));
        let defs: String = (1..60)
            .map(|i| format!("def f{i}: f{} | f{};", i - 1, i - 1))
            .collect();
        assert!(compile_error(&format!("def f0: .; {defs} f59")).contains("nested too deeply"));
    }

    #[test]
    fn deep_input_is_refused() {
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(Input::parse(deep.as_bytes()).is_err());
        let err = run("fromjson", Value::String(deep)).unwrap_err();
        assert!(
            err.contains("recursion limit"),
            "{}",
            &err[..80.min(err.len())]
        );
        assert_eq!(
            one(r#""[1, {\"a\": 2}] 3" | [fromjson]"#, Value::Null),
            json!([[1, {"a": 2}], 3])
        );
    }

    #[test]
    fn numbers_come_out_without_float_noise() {
        assert_eq!(
            one("[1, 2.5, 1e2, 0.1 + 0.2]", Value::Null),
            json!([1, 2.5, 100.0, 0.30000000000000004])
        );
        assert_eq!(
            run("nan, infinite", Value::Null),
            Ok(vec![Value::Null, Value::Null])
        );
        assert_eq!(
            one("[1180000.0000, 29.35]", Value::Null),
            json!([1180000.0, 29.35])
        );
    }

    #[test]
    fn replaced_builtins_keep_their_meaning() {
        assert_eq!(
            one("[1, 2, 3] | del(.[] | select(. == 2))", Value::Null),
            json!([1, 3])
        );
        assert_eq!(
            one("[1, 2] | (.[] | select(. == 2)) |= 5", Value::Null),
            json!([1, 5])
        );
        assert_eq!(
            one("[path(empty), limit(3; empty)]", Value::Null),
            json!([])
        );
        assert_eq!(
            one("[null, 1, \"a\", true] | join(\"-\")", Value::Null),
            json!("-1-a-true")
        );
        assert!(run("[[1]] | join(\"-\")", Value::Null).is_err());
        assert_eq!(one("[null, 1] | map(values)", Value::Null), json!([1]));
        assert_eq!(one("2 | IN(1, 2)", Value::Null), json!(true));
        assert_eq!(
            one("[{id: 1}] | INDEX(.id)", Value::Null),
            json!({"1": {"id": 1}})
        );
    }

    #[test]
    fn expressions_are_shared_between_threads() {
        let expr = std::sync::Arc::new(Expr::compile(".a + 1").expect("compiles"));
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let expr = expr.clone();
                std::thread::spawn(move || {
                    let bindings = Bindings::new("t", "s", &Value::Null, &Value::Null);
                    let input = Input::from_value(&json!({"a": i}));
                    expr.eval_first(&input, &bindings, &Limits::default())
                })
            })
            .collect();
        for (i, handle) in handles.into_iter().enumerate() {
            assert_eq!(handle.join().ok(), Some(Ok(Some(json!(i + 1)))));
        }
    }
}
