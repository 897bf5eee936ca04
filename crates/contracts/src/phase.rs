//! The platform's `PhaseName` enum.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A processing phase, written on the wire as its lowercase snake-case value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PhaseName {
    /// `spellcheck`
    Spellcheck,
    /// `nlp`
    Nlp,
    /// `cj_assessment`
    CjAssessment,
    /// `ai_feedback`
    AiFeedback,
    /// `student_matching` (accepted on the wire; no pipeline of this project uses it)
    StudentMatching,
}

impl PhaseName {
    /// Every phase, in declaration order.
    pub const ALL: [PhaseName; 5] = [
        PhaseName::Spellcheck,
        PhaseName::Nlp,
        PhaseName::CjAssessment,
        PhaseName::AiFeedback,
        PhaseName::StudentMatching,
    ];

    /// The wire value (`"cj_assessment"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            PhaseName::Spellcheck => "spellcheck",
            PhaseName::Nlp => "nlp",
            PhaseName::CjAssessment => "cj_assessment",
            PhaseName::AiFeedback => "ai_feedback",
            PhaseName::StudentMatching => "student_matching",
        }
    }
}

impl fmt::Display for PhaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned by `PhaseName::from_str` for a value that is not a phase name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown phase name `{0}`, expected one of `spellcheck`, `nlp`, `cj_assessment`, `ai_feedback`, `student_matching`")]
pub struct ParsePhaseNameError(pub String);

impl FromStr for PhaseName {
    type Err = ParsePhaseNameError;

    /// Parses the exact wire value (no trimming, case-sensitive, as the platform does).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PhaseName::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| ParsePhaseNameError(s.to_owned()))
    }
}
