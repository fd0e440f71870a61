//! Property tests over generated jq programs and bodies: the projected parse and the direct
//! evaluator must each give exactly what jaq gives over the whole body.

use proptest::prelude::*;
use serde_json::Value;

use super::Demand;
use crate::mapping::expr::{Bindings, Expr, Input, Limits};

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..30).prop_map(Value::from),
        prop_oneof![Just("x"), Just(""), Just("0912345678"), Just("/?ref=r")].prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 5, |inner| {
        let key = prop_oneof![
            Just("a"),
            Just("b"),
            Just("c"),
            Just("k"),
            Just("name"),
            Just("value"),
            Just("note_attributes"),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec((key, inner), 0..5).prop_map(|entries| {
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                )
            }),
        ]
    })
}

/// Small jq programs over the constructs the walk follows and some it does not.
fn program() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(".".to_string()),
        Just(".a".to_string()),
        Just(".b".to_string()),
        Just(".a.b".to_string()),
        Just(r#"."k""#.to_string()),
        Just(".[]?".to_string()),
        Just(".[0]?".to_string()),
        Just(".c[]?.a".to_string()),
        Just("$vars.x".to_string()),
        Just("1".to_string()),
        Just(r#""s""#.to_string()),
        Just("null".to_string()),
        Just(r#"attr("a")"#.to_string()),
        Just("$v".to_string()),
        Just("true".to_string()),
        Just(".[-1]?".to_string()),
        Just("{}".to_string()),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        let two = (inner.clone(), inner.clone());
        prop_oneof![
            two.clone().prop_map(|(l, r)| format!("({l}) | ({r})")),
            two.clone().prop_map(|(l, r)| format!("({l}), ({r})")),
            two.clone().prop_map(|(l, r)| format!("({l}) // ({r})")),
            two.clone().prop_map(|(l, r)| format!("({l}) == ({r})")),
            two.clone()
                .prop_map(|(l, r)| format!("if ({l}) then ({r}) else . end")),
            two.clone()
                .prop_map(|(l, r)| format!("({l}) as $v | [$v, ({r})]")),
            two.clone()
                .prop_map(|(l, r)| format!("first_of([({l}), ({r})])")),
            two.clone()
                .prop_map(|(l, r)| format!("def f(g): g | ({r}); f({l})")),
            two.clone()
                .prop_map(|(l, r)| format!("{{a: ({l}), b: ({r})}}")),
            inner.clone().prop_map(|e| format!("[({e})]")),
            inner.clone().prop_map(|e| format!("({e}).a")),
            inner.clone().prop_map(|e| format!("({e})[]?")),
            inner.clone().prop_map(|e| format!("({e}) | tostring")),
            inner.clone().prop_map(|e| format!("({e}) | length")),
            inner.clone().prop_map(|e| format!("({e}) | keys?")),
            inner.clone().prop_map(|e| format!("select({e})")),
            inner.clone().prop_map(|e| format!("map({e})?")),
            inner.clone().prop_map(|e| format!(r#""<\({e})>""#)),
            inner.clone().prop_map(|e| format!("try ({e})")),
            inner
                .clone()
                .prop_map(|e| format!("[.[]?] | .[1:] | ({e})")),
            inner
                .clone()
                .prop_map(|e| format!("reduce ({e}) as $x (0; . + 1)")),
            inner.clone().prop_map(|e| format!("[({e}) | ..]")),
            inner.clone().prop_map(|e| format!("to_entries? | ({e})")),
            two.clone().prop_map(|(l, r)| format!("({l}) and ({r})")),
            two.clone().prop_map(|(l, r)| format!("({l}) or ({r})")),
            two.clone().prop_map(|(l, r)| format!("({l}) + ({r})")),
            two.clone().prop_map(|(l, r)| format!("({l}) - ({r})")),
            two.clone().prop_map(|(l, r)| format!("({l}) < ({r})")),
            two.clone()
                .prop_map(|(l, r)| format!("{{({l}): ({r}), a}}")),
            two.clone().prop_map(|(l, r)| format!(r#""\({l})-\({r})""#)),
            two.clone()
                .prop_map(|(l, r)| format!("({l}) as $v | ({r}) as $w | [$w, $v]")),
            two.clone().prop_map(|(l, r)| format!(".[({l})]? | ({r})")),
            two.clone().prop_map(|(l, r)| format!("IN(({l}), ({r}))")),
            two.clone()
                .prop_map(|(l, r)| { format!("uuid5(({l}) | tostring; ({r}) | tostring)") }),
            two.prop_map(|(l, r)| format!("if ({l}) then ({r}) elif . then 1 end")),
            inner.clone().prop_map(|e| format!("-({e})")),
            inner.clone().prop_map(|e| format!("({e}) | not")),
            // against a scalar literal a value's type is read, against anything else all of it
            inner.clone().prop_map(|e| {
                format!(r#"[({e}) == null, ({e}) != {{}}, ({e}) < "s", ({e}) == [1]]"#)
            }),
            inner
                .clone()
                .prop_map(|e| format!("({e}) | ltrimstr(\"x\")")),
            inner
                .clone()
                .prop_map(|e| format!("({e}) | startswith(\"0\")")),
            inner.clone().prop_map(|e| format!("[({e})] | join(\",\")")),
            inner.clone().prop_map(|e| format!("({e}) | money")),
            inner.clone().prop_map(|e| format!("[({e})] | money_sum")),
            inner
                .clone()
                .prop_map(|e| format!("({e}) | url_param(\"ref\")")),
            inner
                .clone()
                .prop_map(|e| format!("({e}) | phone(\"VN\"; \"e164\")")),
            inner
                .clone()
                .prop_map(|e| format!("uuid5(\"ns\"; ({e}) | tostring)")),
            inner.prop_map(|e| format!("({e}), empty, ({e})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    /// Whatever a program reads of a body, it reads the same of the projected body:
    /// the same values, and an error exactly where the whole body gives one.
    #[test]
    fn a_program_gives_the_same_over_its_projected_body(code in program(), body in json()) {
        let Ok(expr) = Expr::compile(&code) else {
            return Ok(());
        };
        let bytes = serde_json::to_vec(&body).unwrap();
        let demand = Demand::default().finished_with(expr.demand());
        let (bindings, limits) = (bindings(), Limits::default());
        let whole = expr.eval(&Input::parse(&bytes).unwrap(), &bindings, &limits);
        let projected = Input::parse_projected(&bytes, &demand).unwrap();
        let projected = expr.eval(&projected, &bindings, &limits);
        match whole {
            Ok(values) => prop_assert_eq!(Ok(values), projected, "{} reads\n{}", code, demand),
            Err(_) => prop_assert!(projected.is_err(), "{} reads\n{}", code, demand),
        }
    }

    /// Where the direct evaluator answers, jaq gives the same answer, all outputs or the
    /// first.
    #[test]
    fn the_direct_evaluator_gives_what_jaq_gives(code in program(), body in json()) {
        let Ok(expr) = Expr::compile(&code) else {
            return Ok(());
        };
        let input = Input::from_value(&body);
        let (bindings, limits) = (bindings(), Limits::default());
        for first_only in [false, true] {
            if let Some(direct) = expr.run_direct(&input, &bindings, &limits, first_only) {
                let jaq = expr.run_jaq(&input, &bindings, &limits, first_only);
                prop_assert_eq!(direct, jaq, "{} (first only: {})", code, first_only);
            }
        }
    }
}

fn bindings() -> Bindings {
    let vars = serde_json::json!({"x": "v"});
    Bindings::new("t", "s", &serde_json::json!({}), &vars)
}

/// Most generated programs run directly: a change that sent them all to jaq would leave
/// the property above with nothing to compare.
#[test]
fn most_generated_programs_run_directly() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut compiled, mut direct) = (0, 0);
    for _ in 0..500 {
        let code = program().new_tree(&mut runner).unwrap().current();
        if let Ok(expr) = Expr::compile(&code) {
            compiled += 1;
            direct += usize::from(expr.is_direct());
        }
    }
    eprintln!("{direct} of {compiled} programs run directly");
    assert!(
        direct * 3 > compiled,
        "{direct} of {compiled} programs run directly"
    );
}
/// The cases the generated ones reach too rarely: compared with a literal, an object or an
/// array is read for its type against a scalar and whole against anything else.
#[test]
fn comparisons_with_literals_give_the_same_over_projected_bodies() {
    let code = r#"[(.a) == null, (.a) != {}, (.a) < "s", (.a) == [1], (.a) > false, .a == 2]"#;
    let expr = Expr::compile(code).unwrap();
    let demand = Demand::default().finished_with(expr.demand());
    let (bindings, limits) = (bindings(), Limits::default());
    for body in [
        r#"{"a":{"b":1}}"#,
        r#"{"a":{}}"#,
        r#"{"a":[1]}"#,
        r#"{"a":[2,3]}"#,
        r#"{"a":"s"}"#,
        r#"{"a":"t"}"#,
        r#"{"a":2}"#,
        r#"{"a":null}"#,
        r#"{"b":1}"#,
    ] {
        let whole = expr.eval(&Input::parse(body.as_bytes()).unwrap(), &bindings, &limits);
        let projected = Input::parse_projected(body.as_bytes(), &demand).unwrap();
        let projected = expr.eval(&projected, &bindings, &limits);
        assert_eq!(whole, projected, "{body} (reads {demand})");
    }
}
