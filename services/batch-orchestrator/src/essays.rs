//! Which essays a phase gets (architecture §4.3): a pure function of the batch state.
//!
//! - A phase without dependencies gets every essay of the batch with its original text id.
//! - The first phase that runs in a pipeline gets the essays that succeeded in **every**
//!   dependency (latest completed result of each), with the output text id of the last
//!   dependency in dependency order. A dependency without a usable result (marked complete by an
//!   operator, or its latest run failed) is skipped: the nearest upstream result, else the
//!   original essays, supply the ids.
//! - Every later phase of the same pipeline gets exactly the previous outcome's processed
//!   essays; the orchestrator passes those on directly (see `decide`).

use std::collections::HashMap;

use huleedu_contracts::phase::PhaseName;

use crate::model::{BatchState, EssayRef};

/// Direct dependencies of each phase (what the workers need as input). The conductor owns the
/// pipeline definitions; this table only says whose output a phase reads.
pub fn dependencies(phase: PhaseName) -> &'static [PhaseName] {
    match phase {
        PhaseName::Spellcheck | PhaseName::StudentMatching => &[],
        PhaseName::Nlp | PhaseName::CjAssessment => &[PhaseName::Spellcheck],
        PhaseName::AiFeedback => &[PhaseName::Spellcheck, PhaseName::Nlp],
    }
}

/// All transitive dependencies of `phase`, each after its own dependencies.
pub fn upstream(phase: PhaseName) -> Vec<PhaseName> {
    fn visit(p: PhaseName, out: &mut Vec<PhaseName>) {
        for d in dependencies(p) {
            visit(*d, out);
            if !out.contains(d) {
                out.push(*d);
            }
        }
    }
    let mut out = Vec::new();
    visit(phase, &mut out);
    out
}

/// The essays the first running phase of a pipeline receives (borrowed from the state: the
/// command is written from them without copying a batch's essays).
pub fn essays_for_first_phase(state: &BatchState, phase: PhaseName) -> Vec<&EssayRef> {
    let Some(batch) = &state.batch else {
        return Vec::new();
    };
    let mut essays: Vec<&EssayRef> = batch.essays.iter().collect();
    // Each completed dependency filters the essays (one walk, else lookups by id): linear in
    // the batch size.
    for dep in upstream(phase) {
        let Some(result) = state
            .phase_results
            .get(&dep)
            .filter(|r| r.status.completed())
        else {
            continue;
        };
        essays = keep_succeeded(&essays, &result.succeeded);
    }
    essays
}

/// The essays of `essays` that are in `succeeded`, in the order of `essays`, each as
/// `succeeded` has it (with its output text id).
///
/// A result lists its essays in the order the phase received them, which is the order of
/// `essays`, less the failed ones: one walk through both lists, no lookups. When `succeeded`
/// is not in that order (or names an essay `essays` lacks), lookups by essay id instead. For a
/// batch's essays, whose ids are distinct, both give the same answer (a property test below).
fn keep_succeeded<'a>(essays: &[&'a EssayRef], succeeded: &'a [EssayRef]) -> Vec<&'a EssayRef> {
    let mut out = Vec::with_capacity(succeeded.len().min(essays.len()));
    let mut next = succeeded.iter().peekable();
    for e in essays {
        if let Some(s) = next.next_if(|s| s.essay_id == e.essay_id) {
            out.push(s);
        }
    }
    if next.peek().is_none() {
        return out;
    }
    by_lookup(essays, succeeded)
}

/// [`keep_succeeded`] by lookups only.
fn by_lookup<'a>(essays: &[&'a EssayRef], succeeded: &'a [EssayRef]) -> Vec<&'a EssayRef> {
    let by_id: HashMap<&str, &EssayRef> =
        succeeded.iter().map(|s| (s.essay_id.as_str(), s)).collect();
    essays
        .iter()
        .filter_map(|e| by_id.get(e.essay_id.as_str()).copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The essays as owned values, for comparisons.
    fn first(state: &BatchState, phase: PhaseName) -> Vec<EssayRef> {
        essays_for_first_phase(state, phase)
            .into_iter()
            .cloned()
            .collect()
    }
    use crate::model::{BatchInfo, PhaseResult, RunStatus};
    use huleedu_contracts::timestamp::Timestamp;
    use std::sync::Arc;
    use uuid::Uuid;

    fn essay(i: usize, text: &str) -> EssayRef {
        EssayRef {
            essay_id: format!("e{i}"),
            text_storage_id: format!("{text}{i}"),
        }
    }

    fn state(n: usize) -> BatchState {
        BatchState {
            batch: Some(Arc::new(BatchInfo {
                essays: (0..n).map(|i| essay(i, "orig")).collect(),
                course_code: "ENG5".into(),
                language: "en".into(),
                class_type: "GUEST".into(),
                student_prompt_ref: None,
                user_id: None,
                source: "test".into(),
                updated_at: Timestamp::now(),
            })),
            ..Default::default()
        }
    }

    fn result(status: RunStatus, ok: &[usize], text: &str) -> Arc<PhaseResult> {
        Arc::new(PhaseResult {
            status,
            succeeded: Arc::new(ok.iter().map(|i| essay(*i, text)).collect()),
            failed: vec![],
            pipeline_id: Uuid::nil(),
            at: Timestamp::now(),
        })
    }

    #[test]
    fn upstream_is_in_dependency_order() {
        assert_eq!(upstream(PhaseName::Spellcheck), vec![]);
        assert_eq!(
            upstream(PhaseName::CjAssessment),
            vec![PhaseName::Spellcheck]
        );
        assert_eq!(
            upstream(PhaseName::AiFeedback),
            vec![PhaseName::Spellcheck, PhaseName::Nlp]
        );
    }

    #[test]
    fn a_phase_without_dependencies_gets_all_original_essays() {
        let s = state(3);
        assert_eq!(
            first(&s, PhaseName::Spellcheck),
            (0..3).map(|i| essay(i, "orig")).collect::<Vec<_>>()
        );
    }

    #[test]
    fn failed_essays_stay_out_and_upstream_output_ids_are_used() {
        let mut s = state(4);
        s.phase_results.insert(
            PhaseName::Spellcheck,
            result(RunStatus::CompletedWithFailures, &[0, 2, 3], "spell"),
        );
        assert_eq!(
            first(&s, PhaseName::Nlp),
            vec![essay(0, "spell"), essay(2, "spell"), essay(3, "spell")]
        );
    }

    #[test]
    fn the_last_dependency_supplies_the_text_ids_and_every_dependency_filters() {
        let mut s = state(4);
        s.phase_results.insert(
            PhaseName::Spellcheck,
            result(RunStatus::CompletedWithFailures, &[0, 1, 2], "spell"),
        );
        // nlp succeeded for an essay spellcheck failed (cannot really happen) and failed one.
        s.phase_results.insert(
            PhaseName::Nlp,
            result(RunStatus::CompletedWithFailures, &[1, 2, 3], "nlp"),
        );
        assert_eq!(
            first(&s, PhaseName::AiFeedback),
            vec![essay(1, "nlp"), essay(2, "nlp")]
        );
    }

    #[test]
    fn a_dependency_without_result_falls_back_upstream_then_to_originals() {
        let mut s = state(3);
        // nlp marked complete by an operator: BOS has no nlp result.
        s.phase_results.insert(
            PhaseName::Spellcheck,
            result(RunStatus::CompletedSuccessfully, &[0, 1], "spell"),
        );
        assert_eq!(
            first(&s, PhaseName::AiFeedback),
            vec![essay(0, "spell"), essay(1, "spell")]
        );
        let s = state(2);
        assert_eq!(
            first(&s, PhaseName::AiFeedback),
            vec![essay(0, "orig"), essay(1, "orig")]
        );
    }

    #[test]
    fn a_failed_latest_run_is_not_a_usable_result() {
        let mut s = state(2);
        s.phase_results.insert(
            PhaseName::Spellcheck,
            result(RunStatus::FailedCritically, &[], "spell"),
        );
        assert_eq!(first(&s, PhaseName::Nlp).len(), 2);
    }

    proptest::proptest! {
        /// Distinct essays; a result with any subset of them, in the batch's order or shuffled,
        /// and now and then an essay the batch does not have.
        #[test]
        fn the_walk_keeps_what_the_lookups_keep(
            n in 0usize..40,
            keep in proptest::collection::vec(proptest::bool::ANY, 40),
            shuffle in proptest::bool::ANY,
            stranger in proptest::option::of(0usize..40),
            seed in 0u64..1000,
        ) {
            let batch: Vec<EssayRef> = (0..n).map(|i| essay(i, "orig")).collect();
            let essays: Vec<&EssayRef> = batch.iter().collect();
            let mut succeeded: Vec<EssayRef> =
                (0..n).filter(|i| keep[*i]).map(|i| essay(i, "out")).collect();
            if let Some(at) = stranger {
                succeeded.insert(at.min(succeeded.len()), essay(1000, "out"));
            }
            if shuffle && succeeded.len() > 1 {
                let k = (seed as usize) % succeeded.len();
                succeeded.rotate_left(k.max(1));
            }
            proptest::prop_assert_eq!(
                keep_succeeded(&essays, &succeeded),
                by_lookup(&essays, &succeeded)
            );
        }
    }

    #[test]
    fn an_unknown_batch_has_no_essays() {
        assert!(first(&BatchState::default(), PhaseName::Spellcheck).is_empty());
    }
}
