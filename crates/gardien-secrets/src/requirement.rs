//! What a binary needs: a secret's name, whether it cannot run without it, and why it
//! needs it (for the report).

/// One secret a binary reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub name: String,
    /// A missing required secret fails `check` and refuses a production start.
    pub required: bool,
    /// What it is for: `signs X-Gardien-Identity`, `jwt.issuers[1].secret`.
    pub purpose: String,
    /// Forgotten once every source says it is gone, instead of keeping the last value:
    /// for a value whose removal means "stop accepting it" (a previous secret).
    pub forget_when_removed: bool,
}

impl Requirement {
    pub fn required(name: impl Into<String>, purpose: impl Into<String>) -> Self {
        Requirement {
            name: name.into(),
            required: true,
            purpose: purpose.into(),
            forget_when_removed: false,
        }
    }

    pub fn optional(name: impl Into<String>, purpose: impl Into<String>) -> Self {
        Requirement {
            name: name.into(),
            required: false,
            purpose: purpose.into(),
            forget_when_removed: false,
        }
    }

    /// See [`Requirement::forget_when_removed`].
    pub fn forgotten_when_removed(mut self) -> Self {
        self.forget_when_removed = true;
        self
    }

    /// Folds `other` (same name) into this one: required if either is, both purposes.
    pub(crate) fn merge(&mut self, other: &Requirement) {
        self.required |= other.required;
        self.forget_when_removed &= other.forget_when_removed;
        if !other.purpose.is_empty() && !self.purpose.split("; ").any(|p| p == other.purpose) {
            if !self.purpose.is_empty() {
                self.purpose.push_str("; ");
            }
            self.purpose.push_str(&other.purpose);
        }
    }
}

/// `requirements` with one entry per name, in first-seen order.
pub(crate) fn dedupe(requirements: impl IntoIterator<Item = Requirement>) -> Vec<Requirement> {
    let mut out: Vec<Requirement> = Vec::new();
    for requirement in requirements {
        match out.iter_mut().find(|r| r.name == requirement.name) {
            Some(existing) => existing.merge(&requirement),
            None => out.push(requirement),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_merges_required_and_purposes() {
        let merged = dedupe([
            Requirement::optional("A", "one"),
            Requirement::required("B", "b"),
            Requirement::required("A", "two"),
            Requirement::optional("A", "one"),
        ]);
        assert_eq!(merged.len(), 2);
        assert!(merged[0].required);
        assert_eq!(merged[0].purpose, "one; two");
    }
}
