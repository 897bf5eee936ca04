//! Plain JSON bodies of the services' HTTP APIs (no envelope): the BOS → BCS pipeline
//! definition here, the orchestrator's own status and retry bodies in [`bos`].

pub mod bos;
pub mod redrive;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::decode::{check_len, check_opt_len, check_opt_object, Validate};
use crate::payloads::trim;

/// Body of `POST /internal/v1/pipelines/define` (BOS → BCS).
///
/// `batch_metadata` is the one key the platform leaves out rather than writing `null` (INDEX
/// note 5), and `after_pipeline_id` is this project's extension (not in the platform schema);
/// both are omitted when `None`. Strings are trimmed while decoding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BCSPipelineDefinitionRequestV1 {
    /// The batch, 1..=255 characters.
    #[serde(deserialize_with = "trim::string")]
    pub batch_id: String,
    /// The requested pipeline: a defined pipeline name (`spellcheck`, `nlp`, `cj_assessment`,
    /// `ai_feedback`, `comprehensive` with the built-in definitions). The platform schema types
    /// it as a `PhaseName` value; it is kept as a string here so that BCS can answer an unknown
    /// pipeline with its own 400 error.
    #[serde(deserialize_with = "trim::string")]
    pub requested_pipeline: String,
    /// Correlation id as text (the platform types it as a 1..=100 character string, not a uuid).
    #[serde(deserialize_with = "trim::string")]
    pub correlation_id: String,
    /// Free-form object describing the batch, or absent (BCS ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub batch_metadata: Option<Value>,
    /// This project's: resolve only once BCS has processed the `BatchPipelineCompletedV1` of
    /// this pipeline (its correlation id).
    #[serde(
        default,
        deserialize_with = "trim::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub after_pipeline_id: Option<String>,
}

impl Validate for BCSPipelineDefinitionRequestV1 {
    fn validate(&self) -> Result<(), String> {
        check_len("batch_id", &self.batch_id, 1, 255)?;
        check_len("requested_pipeline", &self.requested_pipeline, 1, 100)?;
        check_len("correlation_id", &self.correlation_id, 1, 100)?;
        check_opt_len(
            "after_pipeline_id",
            self.after_pipeline_id.as_deref(),
            1,
            255,
        )?;
        check_opt_object("batch_metadata", self.batch_metadata.as_ref())
    }
}

/// 200 reply of `POST /internal/v1/pipelines/define` (BCS → BOS).
///
/// `pruned_phases` is this project's addition (not in the platform schema): always written,
/// `[]` when absent on input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BCSPipelineDefinitionResponseV1 {
    /// The batch.
    pub batch_id: String,
    /// Phases to run, in dependency order (phase names); empty when everything is already
    /// completed.
    pub final_pipeline: Vec<String>,
    /// Human-readable summary or `null` (the platform model makes it nullable).
    #[serde(default)]
    pub analysis_summary: Option<String>,
    /// This project's: phases of the requested pipeline left out because already completed, in
    /// dependency order.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub pruned_phases: Vec<String>,
}

impl Validate for BCSPipelineDefinitionResponseV1 {}

/// 200 reply of `GET /internal/v1/pipelines/{name}` (BCS → BOS; this project's): a pipeline's
/// phases, expanded with their dependencies in dependency order, whatever any batch has done.
/// The orchestrator checks a requested name with it without the conductor reading a batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PipelineDefinitionV1 {
    /// The pipeline's name.
    pub pipeline: String,
    /// Its phases with their dependencies, in dependency order.
    pub phases: Vec<String>,
}

impl Validate for PipelineDefinitionV1 {}
