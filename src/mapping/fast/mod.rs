//! The speed layer of jq evaluation, one entry for [`super::expr`] and [`super::Catalog`]:
//! nothing here changes what an expression yields, only how soon.
//!
//! - [`Demand`] ([`demand`]): what of a body an expression may read, found by walking its
//!   syntax tree once when it compiles; a route's mappings read the union of theirs.
//! - [`parse_projected`] ([`project`]): a body parsed into jq values only as far as a
//!   [`Demand`] reads it; the rest is checked as JSON and skipped.
//! - [`Fast::run`] ([`direct`]): the expression evaluated over jaq's values without jaq's
//!   interpreter, where its tree was compiled for that; otherwise, and whenever it meets
//!   an error, it answers `None` and jaq evaluates the expression.
//!
//! Invariant: over any body, an expression gives through this layer exactly what jaq gives
//! over the whole body (the property tests in `generated` compare both on generated
//! programs and bodies). The one deliberate difference is an error where jaq would abort
//! the process (see [`direct::MAX_REPEAT_BYTES`]).

mod demand;
mod direct;
#[cfg(test)]
mod generated;
mod project;

use jaq_core::load::parse::Term;
use jaq_json::Val;

pub(super) use demand::Demand;
pub(super) use project::parse_projected;

use direct::{Direct, Halt};

/// What the speed layer keeps of one compiled expression. Send + Sync.
#[derive(Debug)]
pub(super) struct Fast {
    direct: Option<Direct>,
    demand: Demand,
}

impl Fast {
    /// Prepares the parsed program `term`, which has passed the guard rails.
    pub(super) fn compile(term: &Term<&str>) -> Fast {
        Fast {
            direct: Direct::compile(term),
            demand: demand::demand_of(term),
        }
    }

    /// What the expression may read of its input.
    pub(super) fn demand(&self) -> &Demand {
        &self.demand
    }

    /// Whether [`Fast::run`] can answer (the tests check the generated programs exercise it).
    #[cfg(test)]
    pub(super) fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Evaluates over `input` with the global variables' values (in
    /// [`super::expr::VARIABLES`]' order), giving every output to `out` in jaq's order
    /// until it answers `Ok(false)` (enough) or an error (which becomes the result).
    /// `None`: jaq has to evaluate the expression.
    pub(super) fn run(
        &self,
        input: &Val,
        globals: &[Val],
        out: &mut dyn FnMut(Val) -> Result<bool, String>,
    ) -> Option<Result<(), String>> {
        let direct = self.direct.as_ref()?;
        let mut refused = None;
        let run = direct.run(input, globals, &mut |value| match out(value) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Halt::Enough),
            Err(message) => {
                refused = Some(message);
                Err(Halt::Enough)
            }
        });
        match (run, refused) {
            (Err(Halt::Bail), _) => None,
            (Err(Halt::Refuse(message)), _) => Some(Err(message)),
            (_, Some(message)) => Some(Err(message)),
            _ => Some(Ok(())),
        }
    }
}
