//! Pipeline definitions and resolution (pure: no I/O except reading the definitions file).
//!
//! A [`Definitions`] value holds the phases with their dependencies and the named pipelines. A
//! named pipeline lists *target* phases; it expands to the targets plus the transitive closure of
//! their dependencies, in dependency order. The order is deterministic: a topological order of
//! all phases in which, among phases whose dependencies are all placed, the one declared first
//! comes first. With the built-in table that gives `spellcheck, nlp, cj_assessment, ai_feedback`.
//!
//! [`resolve`] prunes from that closure the phases already completed for the batch.
//!
//! ## `PIPELINES_FILE` format
//!
//! A JSON object with two arrays (unknown keys are refused, so typos do not pass silently):
//!
//! ```json
//! {
//!   "phases": [
//!     {"name": "spellcheck", "depends_on": []},
//!     {"name": "nlp", "depends_on": ["spellcheck"]},
//!     {"name": "cj_assessment", "depends_on": ["spellcheck"]},
//!     {"name": "ai_feedback", "depends_on": ["spellcheck", "nlp"]}
//!   ],
//!   "pipelines": [
//!     {"name": "spellcheck", "phases": ["spellcheck"]},
//!     {"name": "nlp", "phases": ["nlp"]},
//!     {"name": "cj_assessment", "phases": ["cj_assessment"]},
//!     {"name": "ai_feedback", "phases": ["ai_feedback"]},
//!     {"name": "comprehensive", "phases": ["cj_assessment", "ai_feedback"]}
//!   ]
//! }
//! ```
//!
//! - `phases[].name`: a platform phase name (`spellcheck`, `nlp`, `cj_assessment`,
//!   `ai_feedback`, `student_matching`), declared once. Declaration order breaks ties in the
//!   dependency order.
//! - `phases[].depends_on` (default `[]`): declared phases that must complete first.
//! - `pipelines[].name`: the `requested_pipeline` value clients send; unique, not empty.
//! - `pipelines[].phases`: at least one declared phase; dependencies are added automatically.
//!
//! Start-up refuses a file that cannot be read or parsed, an unknown phase name, a phase declared
//! twice, an unknown dependency, a dependency cycle, an empty or duplicate pipeline, or a pipeline
//! naming an undeclared phase, with a message naming the file and the entry.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use huleedu_contracts::PhaseName;
use serde::Deserialize;

/// The built-in definitions (architecture §1), in the `PIPELINES_FILE` format.
pub const BUILTIN_JSON: &str = r#"{
  "phases": [
    {"name": "spellcheck", "depends_on": []},
    {"name": "nlp", "depends_on": ["spellcheck"]},
    {"name": "cj_assessment", "depends_on": ["spellcheck"]},
    {"name": "ai_feedback", "depends_on": ["spellcheck", "nlp"]}
  ],
  "pipelines": [
    {"name": "spellcheck", "phases": ["spellcheck"]},
    {"name": "nlp", "phases": ["nlp"]},
    {"name": "cj_assessment", "phases": ["cj_assessment"]},
    {"name": "ai_feedback", "phases": ["ai_feedback"]},
    {"name": "comprehensive", "phases": ["cj_assessment", "ai_feedback"]}
  ]
}"#;

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefinitionsFile {
    /// Phases and their dependencies, in declaration order.
    pub phases: Vec<PhaseEntry>,
    /// Named pipelines.
    pub pipelines: Vec<PipelineEntry>,
}

/// One `phases[]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseEntry {
    /// Phase name (validated against [`PhaseName`]).
    pub name: String,
    /// Names of phases that must complete first.
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// One `pipelines[]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineEntry {
    /// The `requested_pipeline` value.
    pub name: String,
    /// Target phases.
    pub phases: Vec<String>,
}

/// Why definitions were refused: the file, the entry and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pipelines file {file}: {entry}: {problem}")]
pub struct DefinitionsError {
    /// The file path, or `<built-in>`.
    pub file: String,
    /// The offending entry (`phase `nlp``, `pipeline `x``, `file`).
    pub entry: String,
    /// What is wrong.
    pub problem: String,
}

/// A requested pipeline that is not defined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown pipeline `{requested}`; known pipelines: {}", known.join(", "))]
pub struct UnknownPipeline {
    /// What was asked for.
    pub requested: String,
    /// The defined pipeline names.
    pub known: Vec<String>,
}

/// Validated phase dependencies and named pipelines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definitions {
    source: String,
    /// Every declared phase, in the canonical dependency order.
    order: Vec<PhaseName>,
    /// Direct dependencies of each declared phase.
    deps: BTreeMap<PhaseName, Vec<PhaseName>>,
    /// Each named pipeline, expanded to its closure in canonical order.
    pipelines: BTreeMap<String, Vec<PhaseName>>,
}

/// The outcome of [`resolve`]: what to run and what was left out because already completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Phases to run, in dependency order (empty when everything is done).
    pub final_pipeline: Vec<PhaseName>,
    /// Phases of the closure already completed for the batch, in dependency order.
    pub pruned: Vec<PhaseName>,
}

impl Definitions {
    /// The built-in table (architecture §1).
    pub fn builtin() -> Self {
        Self::from_json("<built-in>", BUILTIN_JSON)
            .expect("built-in pipeline definitions are valid")
    }

    /// Read and validate a definitions file.
    pub fn load(path: &Path) -> Result<Self, DefinitionsError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| DefinitionsError {
            file: file.clone(),
            entry: "file".into(),
            problem: format!("cannot be read: {e}"),
        })?;
        Self::from_json(&file, &text)
    }

    /// Parse and validate definitions given as JSON text; `source` names them in errors.
    pub fn from_json(source: &str, text: &str) -> Result<Self, DefinitionsError> {
        let parsed: DefinitionsFile = serde_json::from_str(text).map_err(|e| DefinitionsError {
            file: source.into(),
            entry: "file".into(),
            problem: format!("not a valid definitions document: {e}"),
        })?;
        Self::from_file(source, parsed)
    }

    /// Validate parsed definitions.
    pub fn from_file(source: &str, file: DefinitionsFile) -> Result<Self, DefinitionsError> {
        let err = |entry: String, problem: String| DefinitionsError {
            file: source.into(),
            entry,
            problem,
        };
        // Phases: known names, declared once.
        let mut declared: Vec<PhaseName> = Vec::new();
        for (i, p) in file.phases.iter().enumerate() {
            let name: PhaseName = p
                .name
                .parse()
                .map_err(|e| err(format!("phases[{i}] `{}`", p.name), format!("{e}")))?;
            if declared.contains(&name) {
                return Err(err(
                    format!("phase `{name}`"),
                    "declared more than once".into(),
                ));
            }
            declared.push(name);
        }
        if declared.is_empty() {
            return Err(err("phases".into(), "no phases declared".into()));
        }
        // Dependencies: declared phases only.
        let mut deps: BTreeMap<PhaseName, Vec<PhaseName>> = BTreeMap::new();
        for (p, &name) in file.phases.iter().zip(&declared) {
            let mut list = Vec::new();
            for d in &p.depends_on {
                let dep = d
                    .parse::<PhaseName>()
                    .ok()
                    .filter(|dep| declared.contains(dep))
                    .ok_or_else(|| {
                        err(
                            format!("phase `{name}`"),
                            format!("depends on `{d}`, which is not a declared phase"),
                        )
                    })?;
                if !list.contains(&dep) {
                    list.push(dep);
                }
            }
            deps.insert(name, list);
        }
        let order = topological_order(&declared, &deps).map_err(|cycle| {
            let path: Vec<&str> = cycle.iter().map(|p| p.as_str()).collect();
            err(
                format!("phase `{}`", cycle[0]),
                format!("dependency cycle {}", path.join(" → ")),
            )
        })?;
        // Pipelines: unique names, at least one declared phase.
        let mut pipelines = BTreeMap::new();
        if file.pipelines.is_empty() {
            return Err(err("pipelines".into(), "no pipelines defined".into()));
        }
        for (i, pl) in file.pipelines.iter().enumerate() {
            let name = pl.name.trim();
            if name.is_empty() {
                return Err(err(format!("pipelines[{i}]"), "name is empty".into()));
            }
            let entry = format!("pipeline `{name}`");
            if pipelines.contains_key(name) {
                return Err(err(entry, "defined more than once".into()));
            }
            if pl.phases.is_empty() {
                return Err(err(entry, "has no phases".into()));
            }
            let mut targets = Vec::new();
            for ph in &pl.phases {
                let phase = ph
                    .parse::<PhaseName>()
                    .ok()
                    .filter(|p| declared.contains(p))
                    .ok_or_else(|| {
                        err(
                            entry.clone(),
                            format!("unknown phase `{ph}` (not declared in phases)"),
                        )
                    })?;
                targets.push(phase);
            }
            pipelines.insert(name.to_owned(), closure_in_order(&targets, &deps, &order));
        }
        Ok(Self {
            source: source.into(),
            order,
            deps,
            pipelines,
        })
    }

    /// Where the definitions came from (a path or `<built-in>`).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every declared phase, in dependency order.
    pub fn phases(&self) -> &[PhaseName] {
        &self.order
    }

    /// Is `phase` declared?
    pub fn has_phase(&self, phase: PhaseName) -> bool {
        self.deps.contains_key(&phase)
    }

    /// Direct dependencies of `phase` (empty when undeclared).
    pub fn dependencies(&self, phase: PhaseName) -> &[PhaseName] {
        self.deps.get(&phase).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The expanded phases of a named pipeline (closure, dependency order).
    pub fn pipeline(&self, name: &str) -> Option<&[PhaseName]> {
        self.pipelines.get(name).map(Vec::as_slice)
    }

    /// The defined pipeline names, sorted.
    pub fn pipeline_names(&self) -> Vec<String> {
        self.pipelines.keys().cloned().collect()
    }
}

/// Expand `requested` and prune the phases in `completed`.
pub fn resolve(
    defs: &Definitions,
    requested: &str,
    completed: &BTreeSet<PhaseName>,
) -> Result<Resolution, UnknownPipeline> {
    let closure = defs.pipeline(requested).ok_or_else(|| UnknownPipeline {
        requested: requested.to_owned(),
        known: defs.pipeline_names(),
    })?;
    let (pruned, final_pipeline) = closure.iter().partition(|p| completed.contains(p));
    Ok(Resolution {
        final_pipeline,
        pruned,
    })
}

/// Kahn's algorithm, taking the earliest-declared ready phase each step. `Err` holds a cycle.
fn topological_order(
    declared: &[PhaseName],
    deps: &BTreeMap<PhaseName, Vec<PhaseName>>,
) -> Result<Vec<PhaseName>, Vec<PhaseName>> {
    let mut placed: Vec<PhaseName> = Vec::with_capacity(declared.len());
    while placed.len() < declared.len() {
        let next = declared
            .iter()
            .find(|p| !placed.contains(p) && deps[p].iter().all(|d| placed.contains(d)));
        match next {
            Some(&p) => placed.push(p),
            None => {
                let remaining: Vec<PhaseName> = declared
                    .iter()
                    .copied()
                    .filter(|p| !placed.contains(p))
                    .collect();
                return Err(find_cycle(&remaining, deps));
            }
        }
    }
    Ok(placed)
}

/// A cycle among `remaining` (every one of them has an unplaced dependency): walk unplaced
/// dependencies until a phase repeats. The result starts and ends with the same phase.
fn find_cycle(
    remaining: &[PhaseName],
    deps: &BTreeMap<PhaseName, Vec<PhaseName>>,
) -> Vec<PhaseName> {
    let mut path = vec![remaining[0]];
    loop {
        let last = *path.last().expect("path is never empty");
        let next = deps[&last]
            .iter()
            .copied()
            .find(|d| remaining.contains(d))
            .expect("an unplaced phase has an unplaced dependency");
        if let Some(start) = path.iter().position(|p| *p == next) {
            let mut cycle = path[start..].to_vec();
            cycle.push(next);
            return cycle;
        }
        path.push(next);
    }
}

/// `targets` plus all their transitive dependencies, in canonical `order`.
fn closure_in_order(
    targets: &[PhaseName],
    deps: &BTreeMap<PhaseName, Vec<PhaseName>>,
    order: &[PhaseName],
) -> Vec<PhaseName> {
    let mut included: BTreeSet<PhaseName> = BTreeSet::new();
    let mut stack: Vec<PhaseName> = targets.to_vec();
    while let Some(p) = stack.pop() {
        if included.insert(p) {
            stack.extend(deps[&p].iter().copied());
        }
    }
    order
        .iter()
        .copied()
        .filter(|p| included.contains(p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use PhaseName::*;

    fn set(phases: &[PhaseName]) -> BTreeSet<PhaseName> {
        phases.iter().copied().collect()
    }

    #[test]
    fn builtin_matches_the_architecture_table() {
        let d = Definitions::builtin();
        let table: [(&str, &[PhaseName]); 5] = [
            ("spellcheck", &[Spellcheck]),
            ("nlp", &[Spellcheck, Nlp]),
            ("cj_assessment", &[Spellcheck, CjAssessment]),
            ("ai_feedback", &[Spellcheck, Nlp, AiFeedback]),
            (
                "comprehensive",
                &[Spellcheck, Nlp, CjAssessment, AiFeedback],
            ),
        ];
        for (name, phases) in table {
            assert_eq!(d.pipeline(name), Some(phases), "{name}");
        }
        assert_eq!(d.pipeline_names().len(), 5);
        assert_eq!(d.dependencies(AiFeedback), &[Spellcheck, Nlp]);
        assert!(!d.has_phase(StudentMatching));
    }

    #[test]
    fn the_example_file_equals_the_builtin_table() {
        let path = huleedu_contracts::checkout_root()
            .join("services/batch-conductor/pipelines.example.json");
        let loaded = Definitions::load(&path).unwrap();
        let builtin = Definitions::builtin();
        assert_eq!(loaded.order, builtin.order);
        assert_eq!(loaded.deps, builtin.deps);
        assert_eq!(loaded.pipelines, builtin.pipelines);
    }

    #[test]
    fn resolve_prunes_completed_phases() {
        let d = Definitions::builtin();
        let r = resolve(&d, "ai_feedback", &set(&[Spellcheck, CjAssessment])).unwrap();
        assert_eq!(r.final_pipeline, vec![Nlp, AiFeedback]);
        assert_eq!(r.pruned, vec![Spellcheck]);
        let r = resolve(&d, "nlp", &set(&[Spellcheck, Nlp])).unwrap();
        assert!(r.final_pipeline.is_empty());
        assert_eq!(r.pruned, vec![Spellcheck, Nlp]);
        // A completed phase whose dependency is not complete is still pruned (acceptance 14).
        let r = resolve(&d, "nlp", &set(&[Nlp])).unwrap();
        assert_eq!(r.final_pipeline, vec![Spellcheck]);
        assert_eq!(r.pruned, vec![Nlp]);
    }

    #[test]
    fn resolve_refuses_unknown_pipelines() {
        let err = resolve(&Definitions::builtin(), "everything", &BTreeSet::new()).unwrap_err();
        assert_eq!(err.requested, "everything");
        assert!(err.to_string().contains("comprehensive"), "{err}");
    }

    fn refuse(json: &str) -> DefinitionsError {
        Definitions::from_json("defs.json", json).unwrap_err()
    }

    #[test]
    fn invalid_files_are_refused_naming_the_entry() {
        let e = refuse(
            r#"{"phases":[{"name":"spellcheck"},{"name":"nlp","depends_on":["ocr"]}],"pipelines":[{"name":"nlp","phases":["nlp"]}]}"#,
        );
        assert_eq!(e.entry, "phase `nlp`");
        assert!(e.problem.contains("`ocr`"), "{e}");
        assert!(
            e.to_string()
                .starts_with("pipelines file defs.json: phase `nlp`: "),
            "{e}"
        );

        let e = refuse(
            r#"{"phases":[{"name":"spellcheck","depends_on":["nlp"]},{"name":"nlp","depends_on":["spellcheck"]}],"pipelines":[{"name":"nlp","phases":["nlp"]}]}"#,
        );
        assert!(
            e.problem.contains("cycle spellcheck → nlp → spellcheck"),
            "{e}"
        );

        let e = refuse(
            r#"{"phases":[{"name":"nlp","depends_on":["nlp"]}],"pipelines":[{"name":"nlp","phases":["nlp"]}]}"#,
        );
        assert!(e.problem.contains("cycle nlp → nlp"), "{e}");

        let e = refuse(r#"{"phases":[{"name":"nlp"}],"pipelines":[{"name":"x","phases":[]}]}"#);
        assert_eq!(
            (e.entry.as_str(), e.problem.as_str()),
            ("pipeline `x`", "has no phases")
        );

        let e = refuse(
            r#"{"phases":[{"name":"nlp"}],"pipelines":[{"name":"x","phases":["spellcheck"]}]}"#,
        );
        assert_eq!(e.entry, "pipeline `x`");
        assert!(e.problem.contains("unknown phase `spellcheck`"), "{e}");

        let e =
            refuse(r#"{"phases":[{"name":"ocr"}],"pipelines":[{"name":"x","phases":["ocr"]}]}"#);
        assert_eq!(e.entry, "phases[0] `ocr`");

        let e = refuse(
            r#"{"phases":[{"name":"nlp"},{"name":"nlp"}],"pipelines":[{"name":"x","phases":["nlp"]}]}"#,
        );
        assert_eq!(e.entry, "phase `nlp`");

        let e = refuse(
            r#"{"phases":[{"name":"nlp"}],"pipelines":[{"name":"x","phases":["nlp"]},{"name":"x","phases":["nlp"]}]}"#,
        );
        assert_eq!(
            (e.entry.as_str(), e.problem.as_str()),
            ("pipeline `x`", "defined more than once")
        );

        let e = refuse(r#"{"phases":[{"name":"nlp"}],"pipelines":[]}"#);
        assert_eq!(e.entry, "pipelines");

        let e = refuse(r#"{"phases":[{"name":"nlp","depends":[]}],"pipelines":[]}"#);
        assert_eq!(e.entry, "file");
        assert!(e.problem.contains("depends"), "{e}");

        let e = Definitions::load(Path::new("/nonexistent/defs.json")).unwrap_err();
        assert_eq!(e.file, "/nonexistent/defs.json");
        assert!(e.problem.contains("cannot be read"), "{e}");
    }

    #[test]
    fn ties_are_broken_by_declaration_order() {
        let d = Definitions::from_json(
            "t",
            r#"{"phases":[{"name":"cj_assessment","depends_on":["spellcheck"]},{"name":"nlp","depends_on":["spellcheck"]},{"name":"spellcheck"}],
                "pipelines":[{"name":"all","phases":["nlp","cj_assessment"]}]}"#,
        )
        .unwrap();
        assert_eq!(d.pipeline("all").unwrap(), &[Spellcheck, CjAssessment, Nlp]);
    }

    /// Random acyclic definitions: a random permutation of phases, each depending on a random
    /// subset of the phases before it; random pipelines over them.
    fn arb_definitions() -> impl Strategy<Value = Definitions> {
        let n = PhaseName::ALL.len();
        (
            Just(PhaseName::ALL.to_vec()).prop_shuffle(),
            proptest::collection::vec(proptest::collection::vec(any::<bool>(), n), n),
            proptest::collection::vec(proptest::collection::vec(any::<bool>(), n), 1..4),
        )
            .prop_map(move |(perm, dep_bits, pipe_bits)| {
                let phases = (0..n)
                    .map(|i| PhaseEntry {
                        name: perm[i].to_string(),
                        depends_on: (0..i)
                            .filter(|&j| dep_bits[i][j])
                            .map(|j| perm[j].to_string())
                            .collect(),
                    })
                    .collect::<Vec<_>>();
                // Declare phases in a scrambled order so declaration order differs from the
                // dependency order.
                let mut declared = phases;
                declared.reverse();
                let pipelines = pipe_bits
                    .iter()
                    .enumerate()
                    .map(|(k, bits)| {
                        let mut targets: Vec<String> = (0..n)
                            .filter(|&j| bits[j])
                            .map(|j| perm[j].to_string())
                            .collect();
                        if targets.is_empty() {
                            targets.push(perm[k % n].to_string());
                        }
                        PipelineEntry {
                            name: format!("p{k}"),
                            phases: targets,
                        }
                    })
                    .collect();
                Definitions::from_file(
                    "prop",
                    DefinitionsFile {
                        phases: declared,
                        pipelines,
                    },
                )
                .expect("generated definitions are valid")
            })
    }

    fn closure_of(defs: &Definitions, targets: &[PhaseName]) -> BTreeSet<PhaseName> {
        let mut out = BTreeSet::new();
        let mut stack = targets.to_vec();
        while let Some(p) = stack.pop() {
            if out.insert(p) {
                stack.extend_from_slice(defs.dependencies(p));
            }
        }
        out
    }

    proptest! {
        #[test]
        fn resolution_properties(
            defs in arb_definitions(),
            completed_bits in proptest::collection::vec(any::<bool>(), PhaseName::ALL.len()),
        ) {
            let completed: BTreeSet<PhaseName> = PhaseName::ALL
                .iter()
                .zip(&completed_bits)
                .filter(|(_, b)| **b)
                .map(|(p, _)| *p)
                .collect();
            for name in defs.pipeline_names() {
                let expanded = defs.pipeline(&name).unwrap().to_vec();
                let r = resolve(&defs, &name, &completed).unwrap();
                // The expansion is exactly the dependency closure, each phase once, in a valid
                // order (every phase after its dependencies).
                let closure = closure_of(&defs, &expanded);
                prop_assert_eq!(expanded.iter().copied().collect::<BTreeSet<_>>(), closure.clone());
                prop_assert_eq!(expanded.len(), closure.len());
                for (i, p) in expanded.iter().enumerate() {
                    for d in defs.dependencies(*p) {
                        let j = expanded.iter().position(|q| q == d);
                        prop_assert!(j.is_some_and(|j| j < i), "{} before its dependency {}", p, d);
                    }
                }
                // resolved ∪ pruned = closure, disjoint, both in closure order.
                let mut union: Vec<PhaseName> = r.final_pipeline.clone();
                union.extend(&r.pruned);
                prop_assert_eq!(union.len(), closure.len());
                prop_assert_eq!(union.iter().copied().collect::<BTreeSet<_>>(), closure);
                let in_order = |xs: &[PhaseName]| {
                    xs.windows(2).all(|w| {
                        expanded.iter().position(|p| *p == w[0]) < expanded.iter().position(|p| *p == w[1])
                    })
                };
                prop_assert!(in_order(&r.final_pipeline));
                prop_assert!(in_order(&r.pruned));
                // No completed phase is resolved; every pruned phase was completed.
                prop_assert!(r.final_pipeline.iter().all(|p| !completed.contains(p)));
                prop_assert!(r.pruned.iter().all(|p| completed.contains(p)));
            }
        }

        #[test]
        fn resolution_is_deterministic(defs in arb_definitions()) {
            for name in defs.pipeline_names() {
                let a = resolve(&defs, &name, &BTreeSet::new()).unwrap();
                let b = resolve(&defs, &name, &BTreeSet::new()).unwrap();
                prop_assert_eq!(a, b);
            }
        }
    }
}
