//! Problems found while loading a policy, each tied to the field it is about.
//!
//! Loading never stops at the first problem: ops fix a policy faster when
//! `gardien check` lists everything that is wrong in one run.

use std::fmt;

/// One problem in a policy, located by its field path (`cors.origins[2]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the field, `routes[3].upstream`; `policy` for the file as a whole.
    pub path: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The problems and warnings gathered while loading one policy.
#[derive(Debug, Default)]
pub struct Diagnostics {
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Diagnostics {
    /// Records a problem that makes the policy unusable. Only the first problem of a field
    /// is kept: an unset `${VAR}` would otherwise also be reported as a malformed value.
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        if self.errors.iter().any(|p| p.path == path) {
            return;
        }
        self.errors.push(Problem {
            path,
            message: message.into(),
        });
    }

    /// Records something legal but probably unintended; printed by `check`, logged by `run`.
    pub fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    pub fn errors(&self) -> &[Problem] {
        &self.errors
    }

    pub fn warnings(&self) -> &[Problem] {
        &self.warnings
    }

    /// Splits into errors and warnings, for the caller that reports them.
    pub fn into_parts(self) -> (Vec<Problem>, Vec<Problem>) {
        (self.errors, self.warnings)
    }
}

/// A policy that could not be loaded, with every problem found in it.
#[derive(Debug)]
pub struct PolicyError {
    /// Never empty.
    pub problems: Vec<Problem>,
    /// Warnings found on the way; reported alongside the errors.
    pub warnings: Vec<Problem>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for problem in &self.problems {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "error: {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}
