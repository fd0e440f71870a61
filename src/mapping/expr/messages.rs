//! Readable messages for what jaq reports: load and compile errors quoting the code they
//! stop at, and runtime errors shortened (jaq quotes whole values in them).

use jaq_core::compile::Undefined;
use jaq_core::load::{self, lex};
use jaq_json::Val;

use super::{CompileError, VARIABLES};

/// Longest error message returned, in bytes; jaq quotes whole values in its messages.
pub(super) const MAX_MESSAGE_BYTES: usize = 300;

pub(super) fn exception_message(exception: jaq_core::Exn<'_, Val>) -> String {
    let Ok(error) = exception.get_err() else {
        return "the expression halted".into();
    };
    let message = match error.into_val() {
        Val::TStr(s) | Val::BStr(s) => String::from_utf8_lossy(&s).into_owned(),
        other => other.to_string(),
    };
    shorten(message)
}

fn shorten(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        message.truncate(message.floor_char_boundary(MAX_MESSAGE_BYTES));
        message.push('…');
    }
    message
}

/// A short quote of `code` starting at `rest`.
fn near(rest: &str) -> String {
    let quote: String = rest.chars().take(24).collect();
    if quote.is_empty() {
        "the end".into()
    } else {
        format!("`{quote}`")
    }
}

/// Where `part`, a slice of `code`, starts in it.
fn offset_in(code: &str, part: &str) -> Option<usize> {
    let offset = (part.as_ptr() as usize).checked_sub(code.as_ptr() as usize)?;
    (offset <= code.len()).then_some(offset)
}

pub(super) fn load_errors<'s>(
    code: &str,
    errors: impl Iterator<Item = load::Error<&'s str>>,
) -> CompileError {
    let mut messages = Vec::new();
    let mut offset = None;
    for error in errors {
        match error {
            load::Error::Io(_) => messages.push("imports and includes are not supported".into()),
            load::Error::Lex(errors) => {
                messages.extend(errors.into_iter().map(|(expect, rest)| {
                    offset = offset.or_else(|| offset_in(code, rest));
                    let expected = match expect {
                        lex::Expect::Delim("(") => "a closing parenthesis",
                        lex::Expect::Delim("[") => "a closing bracket",
                        lex::Expect::Delim("{") => "a closing brace",
                        lex::Expect::Delim("\"") => "a closing quote",
                        lex::Expect::Delim(_) => "a closing delimiter",
                        lex::Expect::Digit => "a digit",
                        lex::Expect::Ident => "an identifier",
                        lex::Expect::Escape => "a string escape sequence",
                        lex::Expect::Unicode => "a 4-digit hexadecimal code point",
                        _ => "a valid token",
                    };
                    format!("syntax error: expected {expected} near {}", near(rest))
                }))
            }
            load::Error::Parse(errors) => {
                messages.extend(errors.into_iter().map(|(expect, found)| {
                    offset = offset.or_else(|| offset_in(code, found));
                    format!(
                        "syntax error: expected {} near {}",
                        expect.as_str(),
                        near(found)
                    )
                }))
            }
        }
    }
    CompileError {
        message: messages.join("; "),
        offset,
    }
}

pub(super) fn compile_errors<'s>(
    code: &str,
    errors: impl Iterator<Item = (&'s str, Undefined)>,
) -> CompileError {
    let mut offset = None;
    let messages: Vec<String> = errors
        .map(|(name, undefined)| {
            offset = offset.or_else(|| offset_in(code, name));
            undefined_message(name, undefined)
        })
        .collect();
    CompileError {
        message: messages.join("; "),
        offset,
    }
}

fn undefined_message(name: &str, undefined: Undefined) -> String {
    match undefined {
        Undefined::Filter(arity) => format!("undefined function `{name}/{arity}`"),
        Undefined::Var => format!(
            "undefined variable `{name}` (bound: {})",
            VARIABLES.map(|v| format!("${v}")).join(", ")
        ),
        other => format!("undefined {} `{name}`", other.as_str()),
    }
}
