//! The pure core: which essays fail, a phase's status, new text ids, and the outcome a command
//! gets. No I/O and no clock; everything here is deterministic.
//!
//! Failure injection combines three sources; an essay fails in a phase when any of them says so:
//!
//! 1. explicit `phase:essay_id` pairs from `SIM_FAIL` ([`FailureRules::explicit`]);
//! 2. per-batch failures registered over HTTP ([`BatchOverrides::fail`]);
//! 3. a rate with a seed ([`FailureRules::rate`], [`FailureRules::seed`]): the essay fails iff
//!    [`unit_hash`]`(seed, phase, essay_id) < rate`, with a stable hash of our own (FNV-1a 64
//!    finished with splitmix64), so the same seed gives the same failures on every run and
//!    machine.

use std::collections::{BTreeMap, BTreeSet};

use huleedu_contracts::payloads::{ELSBatchPhaseOutcomeV1, EssayProcessingInputRefV1};
use huleedu_contracts::{BatchStatus, PhaseName};
use uuid::Uuid;

/// The phases this worker answers (those with an initiate-command topic).
pub const HANDLED_PHASES: [PhaseName; 4] = [
    PhaseName::Spellcheck,
    PhaseName::Nlp,
    PhaseName::CjAssessment,
    PhaseName::AiFeedback,
];

/// Parses a phase name this worker answers; the error message names the value and lists the
/// accepted ones.
pub fn parse_phase(name: &str) -> Result<PhaseName, String> {
    let expected = "expected one of spellcheck, nlp, cj_assessment, ai_feedback";
    match name.parse::<PhaseName>() {
        Ok(phase) if HANDLED_PHASES.contains(&phase) => Ok(phase),
        Ok(phase) => Err(format!(
            "phase `{phase}` has no initiate command this worker consumes; {expected}"
        )),
        Err(_) => Err(format!("unknown phase name `{name}`; {expected}")),
    }
}

/// Failure injection configured for the whole process.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FailureRules {
    /// `SIM_FAIL`: essays that fail in a phase, whatever the batch.
    pub explicit: BTreeMap<PhaseName, BTreeSet<String>>,
    /// `SIM_FAIL_RATE`: share of essays that fail (0.0..=1.0).
    pub rate: f64,
    /// `SIM_SEED`: which essays the rate picks.
    pub seed: u64,
}

/// Behaviour registered for one batch over HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchOverrides {
    /// Essays that fail, per phase, in this batch.
    pub fail: BTreeMap<PhaseName, BTreeSet<String>>,
    /// Phases never answered for this batch.
    pub silent_phases: BTreeSet<PhaseName>,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// splitmix64's finalizer: spreads FNV's weak low bits over the whole word.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a 64 over length-prefixed fields, finished with splitmix64. Stable across runs,
/// platforms and Rust versions (unlike `std`'s randomized hasher).
#[derive(Debug, Clone)]
struct StableHasher(u64);

impl StableHasher {
    fn new(seed: u64) -> Self {
        let mut h = StableHasher(FNV_OFFSET);
        h.bytes(&seed.to_le_bytes());
        h
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    /// A field, prefixed with its length so that ("ab","c") and ("a","bc") differ.
    fn field(mut self, s: &str) -> Self {
        self.bytes(&(s.len() as u64).to_le_bytes());
        self.bytes(s.as_bytes());
        self
    }

    fn finish(&self) -> u64 {
        splitmix64(self.0)
    }
}

/// The stable hash of `(seed, phase, essay_id)` mapped to `[0, 1)`.
pub fn unit_hash(seed: u64, phase: PhaseName, essay_id: &str) -> f64 {
    let h = StableHasher::new(seed)
        .field("fail")
        .field(phase.as_str())
        .field(essay_id)
        .finish();
    // The top 53 bits are exactly representable as an f64 in [0, 1).
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether the rate picks this essay: never at 0.0, always at 1.0.
pub fn rate_fails(seed: u64, rate: f64, phase: PhaseName, essay_id: &str) -> bool {
    rate > 0.0 && unit_hash(seed, phase, essay_id) < rate
}

/// Whether `essay_id` fails in `phase`, from the process rules and the batch's overrides.
pub fn essay_fails(
    rules: &FailureRules,
    overrides: Option<&BatchOverrides>,
    phase: PhaseName,
    essay_id: &str,
) -> bool {
    let listed = |fail: &BTreeMap<PhaseName, BTreeSet<String>>| {
        fail.get(&phase).is_some_and(|ids| ids.contains(essay_id))
    };
    listed(&rules.explicit)
        || overrides.is_some_and(|o| listed(&o.fail))
        || rate_fails(rules.seed, rules.rate, phase, essay_id)
}

/// The phase status the platform's ELS reports: all ok → `completed_successfully`, some ok →
/// `completed_with_failures`, none ok (or no essays at all) → `failed_critically`.
pub fn phase_status(processed: usize, failed: usize) -> BatchStatus {
    match (processed, failed) {
        (0, _) => BatchStatus::FailedCritically,
        (_, 0) => BatchStatus::CompletedSuccessfully,
        _ => BatchStatus::CompletedWithFailures,
    }
}

/// 32 lowercase hex characters (a Content Service storage id) from two stable hashes.
fn hex_id(parts: &[&str]) -> String {
    let half = |lane: &str| {
        parts
            .iter()
            .fold(StableHasher::new(0).field(lane), |h, p| h.field(p))
            .finish()
    };
    format!("{:016x}{:016x}", half("hi"), half("lo"))
}

/// The storage id of a phase's output for one essay: 32 lowercase hex characters, derived from
/// phase, essay id and input text id, and never equal to the input text id.
pub fn output_text_id(phase: PhaseName, essay_id: &str, input_text_id: &str) -> String {
    let mut salt = 0u32;
    loop {
        let salt_text = salt.to_string();
        let id = hex_id(&[
            "output",
            phase.as_str(),
            essay_id,
            input_text_id,
            &salt_text,
        ]);
        if !id.eq_ignore_ascii_case(input_text_id) {
            return id;
        }
        salt += 1;
    }
}

/// The storage id of a demo essay's original text (32 lowercase hex characters).
pub fn original_text_id(batch_id: &str, essay_id: &str) -> String {
    hex_id(&["original", batch_id, essay_id])
}

/// The essay ids generated for a demo batch: `<batch_id>-e01`, `-e02`, ... (at least two
/// digits).
pub fn generated_essay_ids(batch_id: &str, count: usize) -> Vec<String> {
    (1..=count).map(|i| format!("{batch_id}-e{i:02}")).collect()
}

/// What an initiate command asks for, whichever phase it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The command's envelope `event_id` (dispatch counting, deduplication).
    pub event_id: Uuid,
    /// `entity_id`, or the message key when that is absent.
    pub batch_id: String,
    /// From the topic the command came on.
    pub phase: PhaseName,
    /// The command envelope's `correlation_id`.
    pub correlation_id: Uuid,
    /// `essays_to_process`.
    pub essays: Vec<EssayProcessingInputRefV1>,
    /// The command's W3C trace context (its envelope's `metadata`), carried on to the outcome.
    pub trace: Option<huleedu_contracts::trace::TraceContext>,
}

/// The answer a command gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The phase is silent (process-wide or for this batch): never answered.
    Silent,
    /// Publish this outcome.
    Answer(ELSBatchPhaseOutcomeV1),
}

/// The outcome of `command` when `fails` says which essays fail: successful essays carry a new
/// output text id, failed ones are listed by id, both in command order.
pub fn build_outcome(command: &Command, fails: impl Fn(&str) -> bool) -> ELSBatchPhaseOutcomeV1 {
    let mut processed_essays = Vec::new();
    let mut failed_essay_ids = Vec::new();
    for essay in &command.essays {
        if fails(&essay.essay_id) {
            failed_essay_ids.push(essay.essay_id.clone());
        } else {
            processed_essays.push(EssayProcessingInputRefV1::new(
                essay.essay_id.clone(),
                output_text_id(command.phase, &essay.essay_id, &essay.text_storage_id),
            ));
        }
    }
    ELSBatchPhaseOutcomeV1 {
        batch_id: command.batch_id.clone(),
        phase_name: command.phase,
        phase_status: phase_status(processed_essays.len(), failed_essay_ids.len()),
        processed_essays,
        failed_essay_ids,
        correlation_id: command.correlation_id,
    }
}

/// Decides the answer to `command` from the process-wide rules, the silent phases and the
/// batch's overrides.
pub fn decide(
    command: &Command,
    rules: &FailureRules,
    silent_phases: &BTreeSet<PhaseName>,
    overrides: Option<&BatchOverrides>,
) -> Decision {
    let silent = silent_phases.contains(&command.phase)
        || overrides.is_some_and(|o| o.silent_phases.contains(&command.phase));
    if silent {
        return Decision::Silent;
    }
    Decision::Answer(build_outcome(command, |essay_id| {
        essay_fails(rules, overrides, command.phase, essay_id)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("essay-{i}")).collect()
    }

    fn failing(rules: &FailureRules, phase: PhaseName, essays: &[String]) -> BTreeSet<String> {
        essays
            .iter()
            .filter(|e| essay_fails(rules, None, phase, e))
            .cloned()
            .collect()
    }

    fn rate(rate: f64, seed: u64) -> FailureRules {
        FailureRules {
            rate,
            seed,
            ..FailureRules::default()
        }
    }

    fn command(n: usize) -> Command {
        Command {
            event_id: Uuid::from_u128(1),
            batch_id: "batch-1".into(),
            phase: PhaseName::Spellcheck,
            correlation_id: Uuid::from_u128(42),
            essays: (0..n)
                .map(|i| {
                    EssayProcessingInputRefV1::new(
                        format!("essay-{i}"),
                        original_text_id("batch-1", &format!("essay-{i}")),
                    )
                })
                .collect(),
            trace: None,
        }
    }

    fn is_storage_id(s: &str) -> bool {
        s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    #[test]
    fn rate_zero_fails_nothing_and_rate_one_fails_everything() {
        let essays = ids(500);
        for phase in HANDLED_PHASES {
            assert!(failing(&rate(0.0, 7), phase, &essays).is_empty());
            assert_eq!(failing(&rate(1.0, 7), phase, &essays).len(), essays.len());
        }
    }

    #[test]
    fn same_seed_same_failures_other_seed_other_failures() {
        let essays = ids(400);
        let a = failing(&rate(0.3, 11), PhaseName::Nlp, &essays);
        let b = failing(&rate(0.3, 11), PhaseName::Nlp, &essays);
        let c = failing(&rate(0.3, 12), PhaseName::Nlp, &essays);
        assert_eq!(a, b);
        assert_ne!(a, c);
        // The phase is part of the draw too.
        assert_ne!(a, failing(&rate(0.3, 11), PhaseName::Spellcheck, &essays));
    }

    #[test]
    fn rate_is_roughly_honoured() {
        let essays = ids(4000);
        let n = failing(&rate(0.25, 3), PhaseName::CjAssessment, &essays).len();
        assert!((800..=1200).contains(&n), "{n} of 4000 failed at rate 0.25");
    }

    // Computed independently (Python) from the definition: FNV-1a 64 over length-prefixed
    // fields, finished with splitmix64.
    const PINNED_EMPTY: u64 = 4_725_398_728_194_510_117;
    const PINNED_OUTPUT: &str = "6436051f7b3eb95025e0aa2d6df3844c";

    #[test]
    fn the_hash_is_stable() {
        // Pinned values: a change here changes which essays fail for existing seeds and which
        // output ids existing runs produced.
        assert_eq!(StableHasher::new(0).field("").finish(), PINNED_EMPTY);
        assert_eq!(
            unit_hash(7, PhaseName::Spellcheck, "essay-1"),
            8_969_019_029_489_721.0 / (1u64 << 53) as f64
        );
        assert_eq!(
            output_text_id(
                PhaseName::Spellcheck,
                "e1",
                "0123456789abcdef0123456789abcdef"
            ),
            PINNED_OUTPUT
        );
    }

    #[test]
    fn explicit_failures_are_honoured_per_phase() {
        let mut rules = FailureRules::default();
        rules
            .explicit
            .entry(PhaseName::Spellcheck)
            .or_default()
            .insert("essay-3".into());
        assert!(essay_fails(&rules, None, PhaseName::Spellcheck, "essay-3"));
        assert!(!essay_fails(&rules, None, PhaseName::Spellcheck, "essay-4"));
        assert!(!essay_fails(&rules, None, PhaseName::Nlp, "essay-3"));
    }

    #[test]
    fn batch_overrides_add_failures() {
        let mut overrides = BatchOverrides::default();
        overrides
            .fail
            .entry(PhaseName::Nlp)
            .or_default()
            .insert("essay-1".into());
        let rules = FailureRules::default();
        assert!(essay_fails(
            &rules,
            Some(&overrides),
            PhaseName::Nlp,
            "essay-1"
        ));
        assert!(!essay_fails(&rules, None, PhaseName::Nlp, "essay-1"));
        assert!(!essay_fails(
            &rules,
            Some(&overrides),
            PhaseName::Spellcheck,
            "essay-1"
        ));
    }

    #[test]
    fn status_rules() {
        assert_eq!(phase_status(5, 0), BatchStatus::CompletedSuccessfully);
        assert_eq!(phase_status(4, 1), BatchStatus::CompletedWithFailures);
        assert_eq!(phase_status(0, 5), BatchStatus::FailedCritically);
        assert_eq!(phase_status(0, 0), BatchStatus::FailedCritically);
    }

    #[test]
    fn output_ids_are_new_storage_ids() {
        let input = original_text_id("b", "e1");
        assert!(is_storage_id(&input));
        let mut seen = BTreeSet::new();
        for phase in HANDLED_PHASES {
            let out = output_text_id(phase, "e1", &input);
            assert!(is_storage_id(&out), "{out}");
            assert_ne!(out, input);
            assert!(seen.insert(out), "each phase writes its own output");
        }
        assert_ne!(
            output_text_id(PhaseName::Nlp, "e1", &input),
            output_text_id(PhaseName::Nlp, "e2", &input)
        );
    }

    #[test]
    fn outcome_splits_essays_and_copies_the_correlation_id() {
        let cmd = command(5);
        let outcome = build_outcome(&cmd, |e| e == "essay-2");
        assert_eq!(outcome.batch_id, "batch-1");
        assert_eq!(outcome.phase_name, PhaseName::Spellcheck);
        assert_eq!(outcome.phase_status, BatchStatus::CompletedWithFailures);
        assert_eq!(outcome.correlation_id, cmd.correlation_id);
        assert_eq!(outcome.failed_essay_ids, vec!["essay-2".to_owned()]);
        let processed: Vec<&str> = outcome
            .processed_essays
            .iter()
            .map(|e| e.essay_id.as_str())
            .collect();
        assert_eq!(processed, ["essay-0", "essay-1", "essay-3", "essay-4"]);
        for (out, input) in outcome
            .processed_essays
            .iter()
            .zip(cmd.essays.iter().filter(|e| e.essay_id != "essay-2"))
        {
            assert_ne!(out.text_storage_id, input.text_storage_id);
            assert!(is_storage_id(&out.text_storage_id));
            assert!(out.spellcheck_metrics.is_none());
        }
    }

    #[test]
    fn all_or_nothing_outcomes() {
        let cmd = command(3);
        let ok = build_outcome(&cmd, |_| false);
        assert_eq!(ok.phase_status, BatchStatus::CompletedSuccessfully);
        assert!(ok.failed_essay_ids.is_empty());
        let bad = build_outcome(&cmd, |_| true);
        assert_eq!(bad.phase_status, BatchStatus::FailedCritically);
        assert!(bad.processed_essays.is_empty());
        assert_eq!(bad.failed_essay_ids.len(), 3);
        let empty = build_outcome(&command(0), |_| false);
        assert_eq!(empty.phase_status, BatchStatus::FailedCritically);
    }

    #[test]
    fn silence_comes_from_settings_or_the_batch() {
        let cmd = command(2);
        let rules = FailureRules::default();
        let none = BTreeSet::new();
        assert!(matches!(
            decide(&cmd, &rules, &none, None),
            Decision::Answer(_)
        ));
        let silent = BTreeSet::from([PhaseName::Spellcheck]);
        assert_eq!(decide(&cmd, &rules, &silent, None), Decision::Silent);
        let overrides = BatchOverrides {
            silent_phases: BTreeSet::from([PhaseName::Spellcheck]),
            ..BatchOverrides::default()
        };
        assert_eq!(
            decide(&cmd, &rules, &none, Some(&overrides)),
            Decision::Silent
        );
        let other = BatchOverrides {
            silent_phases: BTreeSet::from([PhaseName::Nlp]),
            ..BatchOverrides::default()
        };
        assert!(matches!(
            decide(&cmd, &rules, &none, Some(&other)),
            Decision::Answer(_)
        ));
    }

    #[test]
    fn decide_applies_every_failure_source() {
        let cmd = command(4);
        let mut rules = FailureRules::default();
        rules.explicit.insert(
            PhaseName::Spellcheck,
            BTreeSet::from(["essay-0".to_owned()]),
        );
        let overrides = BatchOverrides {
            fail: BTreeMap::from([(
                PhaseName::Spellcheck,
                BTreeSet::from(["essay-1".to_owned()]),
            )]),
            ..BatchOverrides::default()
        };
        let Decision::Answer(outcome) = decide(&cmd, &rules, &BTreeSet::new(), Some(&overrides))
        else {
            panic!("expected an answer");
        };
        assert_eq!(outcome.failed_essay_ids, ["essay-0", "essay-1"]);
        assert_eq!(outcome.processed_essays.len(), 2);
    }

    #[test]
    fn phase_names_are_checked() {
        assert_eq!(parse_phase("cj_assessment"), Ok(PhaseName::CjAssessment));
        assert!(parse_phase("spelcheck")
            .unwrap_err()
            .contains("`spelcheck`"));
        assert!(parse_phase("student_matching")
            .unwrap_err()
            .contains("student_matching"));
    }

    #[test]
    fn generated_ids_have_two_digits_minimum() {
        assert_eq!(generated_essay_ids("b", 2), ["b-e01", "b-e02"]);
        assert_eq!(generated_essay_ids("b", 100)[99], "b-e100");
    }
}
