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

use std::fmt;

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::Term;

pub(super) use walk::demand_of;

mod env;
mod walk;

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

    pub(super) fn mark_whole(&mut self, path: &[Step]) {
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
pub(super) enum Step {
    Field(String),
    /// Any element or value.
    Each,
}

/// The text of a string literal without interpolation.
pub(in crate::mapping::fast) fn literal(term: &Term<&str>) -> Option<String> {
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
