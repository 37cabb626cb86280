//! The evidence API: the transparency log's latest signed checkpoint, signing one now,
//! inclusion and consistency proofs (docs/audit.md, "Transparency log"), and the proof packs
//! of an action or a period (docs/proof-packs.md). What they do is in
//! [`crate::evidence::TransparencyLog`]; these handlers parse, call it and answer.

use aaf_core::evidence::merkle::Hash;
use aaf_store::evidence::StoredCheckpoint;
use aaf_store::SYSTEM_CHAIN;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::app::AppState;
use crate::auth::UserAuth;
use crate::error::{ApiError, ErrorBody};

/// A signed checkpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointView {
    /// The chain: the organisation id or `system`.
    pub chain: String,
    /// The tree size it commits to (the events with seq 1 to `tree_size`).
    pub tree_size: u64,
    /// The root of that tree (RFC 9162 section 2.1.1), 64 hex characters.
    pub root_hash: String,
    /// The checkpoint as a C2SP signed note (`tlog-checkpoint` body: origin line
    /// `<log name>/<chain>`, tree size, base64 root; a blank line; the Ed25519 signature
    /// line), exactly as published to the sinks.
    pub note: String,
    /// When it was signed, RFC 3339 UTC.
    pub created_at: String,
    /// The signed-note verifier key of the log (`<name>+<key id>+<base64 key>`), when this
    /// server has one. Compare it with the one you were given out of band: a key read from
    /// the server you are checking proves nothing on its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verifier_key: Option<String>,
}

impl CheckpointView {
    fn of(checkpoint: StoredCheckpoint, state: &AppState) -> Self {
        CheckpointView {
            chain: checkpoint.org_id,
            tree_size: checkpoint.tree_size,
            root_hash: hex::encode(checkpoint.root_hash),
            note: checkpoint.note,
            created_at: checkpoint.created_at,
            verifier_key: state.evidence.verifier_key(),
        }
    }
}

/// `?chain=`: which chain (`system`, or the caller's organisation, the default).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChainQuery {
    /// `system` for the chain of unauthenticated events (admins and auditors of the first
    /// organisation only); default: the caller's organisation.
    #[serde(default)]
    pub chain: Option<String>,
}

/// `GET /v1/audit/proof/inclusion` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InclusionQuery {
    /// The event's seq, 1 to 2^63-1.
    #[param(minimum = 1)]
    pub seq: Option<i64>,
    /// The tree size to prove inclusion in, at least `seq`; default: the latest
    /// checkpoint's.
    #[serde(default)]
    #[param(minimum = 1)]
    pub tree_size: Option<i64>,
    /// As for the checkpoint.
    #[serde(default)]
    pub chain: Option<String>,
}

/// `GET /v1/audit/proof/consistency` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    /// The older tree size, at least 1.
    #[param(minimum = 1)]
    pub from: Option<i64>,
    /// The newer tree size, at least `from`; default: the latest checkpoint's.
    #[serde(default)]
    #[param(minimum = 1)]
    pub to: Option<i64>,
    /// As for the checkpoint.
    #[serde(default)]
    pub chain: Option<String>,
}

/// An inclusion proof (RFC 9162 section 2.1.3.1) of one event.
#[derive(Debug, Serialize, ToSchema)]
pub struct InclusionView {
    /// The chain.
    pub chain: String,
    /// The event's seq.
    pub seq: u64,
    /// Its leaf index in the tree: `seq - 1`.
    pub leaf_index: u64,
    /// The tree size the proof is for.
    pub tree_size: u64,
    /// The event's leaf hash, `SHA-256(0x00 || JCS(event))`, hex.
    pub leaf_hash: String,
    /// The sibling hashes from the leaf up to the root, hex.
    pub proof: Vec<String>,
    /// The root of the tree of `tree_size`, hex.
    pub root_hash: String,
    /// The signed checkpoint of `tree_size`, when one was signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointView>,
}

/// A consistency proof (RFC 9162 section 2.1.4.1) between two tree sizes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsistencyView {
    /// The chain.
    pub chain: String,
    /// The older size.
    pub from: u64,
    /// The newer size.
    pub to: u64,
    /// The root of the tree of `from`, hex.
    pub from_root: String,
    /// The root of the tree of `to`, hex.
    pub to_root: String,
    /// The proof's hashes, hex.
    pub proof: Vec<String>,
}

fn hexes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

/// The chain a request names: the caller's organisation, or `system` for admins and auditors
/// of the first organisation (as `GET /v1/audit`).
///
/// # Errors
///
/// 403 for `system` asked by anyone else; 400 naming `chain` for another organisation.
pub(crate) fn requested_chain(
    state: &AppState,
    user: &aaf_store::TokenPrincipal,
    chain: Option<&str>,
) -> Result<String, ApiError> {
    match chain {
        None => Ok(user.org.id.clone()),
        Some(SYSTEM_CHAIN)
            if user.org.id == *state.default_org_id
                && matches!(user.role.as_str(), "admin" | "auditor") =>
        {
            Ok(SYSTEM_CHAIN.to_string())
        }
        Some(SYSTEM_CHAIN) => Err(ApiError::Forbidden(
            "only admins and auditors of the first organisation may read the system chain".into(),
        )),
        Some(other) if other == user.org.id => Ok(other.to_string()),
        Some(_) => Err(ApiError::field(
            "chain",
            "must be `system` or your organisation's id",
        )),
    }
}

/// A size or seq parameter: 1 to 2^63-1.
fn positive(value: i64, field: &'static str) -> Result<u64, ApiError> {
    u64::try_from(value)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| ApiError::field(field, "must be from 1 to 2^63-1"))
}

/// The latest signed checkpoint of the organisation's audit chain.
#[utoipa::path(get, path = "/v1/audit/checkpoint", tag = "audit",
    params(ChainQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the latest checkpoint", body = CheckpointView),
        (status = 400, description = "bad query parameter", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "the role may not read the audit log", body = ErrorBody),
        (status = 404, description = "no checkpoint has been signed yet", body = ErrorBody),
        (status = 503, description = "checkpoints are not signed here (no log key), or storage unavailable", body = ErrorBody),
    ))]
pub async fn get_checkpoint(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    query: Result<Query<ChainQuery>, QueryRejection>,
) -> Result<Json<CheckpointView>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::from_query_rejection(&e))?;
    let chain = requested_chain(&state, &user, query.chain.as_deref())?;
    let checkpoint = state.evidence.latest(&chain).await?;
    Ok(Json(CheckpointView::of(checkpoint, &state)))
}

/// Brings the organisation's tree up to its chain's head and signs a checkpoint of it now
/// (written to the sinks before the answer); answers the latest checkpoint when the tree has
/// not grown since.
#[utoipa::path(post, path = "/v1/audit/checkpoint", tag = "audit",
    params(ChainQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the checkpoint of the chain as it is now", body = CheckpointView),
        (status = 400, description = "bad query parameter", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "the role may not sign checkpoints", body = ErrorBody),
        (status = 404, description = "the chain has no events", body = ErrorBody),
        (status = 503, description = "checkpoints are not signed here (no log key), or storage unavailable", body = ErrorBody),
    ))]
pub async fn sign_checkpoint(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    query: Result<Query<ChainQuery>, QueryRejection>,
) -> Result<(StatusCode, Json<CheckpointView>), ApiError> {
    let Query(query) = query.map_err(|e| ApiError::from_query_rejection(&e))?;
    let chain = requested_chain(&state, &user, query.chain.as_deref())?;
    let head = state
        .store
        .audit_chain_heads()
        .await?
        .into_iter()
        .find(|(org, _)| *org == chain)
        .map_or(0, |(_, seq)| seq);
    state.evidence.build(&chain, head).await?;
    let checkpoint = state
        .evidence
        .checkpoint(&chain, true)
        .await?
        .ok_or_else(|| ApiError::NotFound("chain: the chain has no events yet".into()))?;
    Ok((StatusCode::OK, Json(CheckpointView::of(checkpoint, &state))))
}

/// The inclusion proof of one event of the organisation's chain in a tree (default: the
/// latest checkpoint's).
#[utoipa::path(get, path = "/v1/audit/proof/inclusion", tag = "audit",
    params(InclusionQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the proof", body = InclusionView),
        (status = 400, description = "bad or missing parameter (named), or seq beyond tree_size", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "the role may not read the audit log", body = ErrorBody),
        (status = 404, description = "tree_size beyond the tree built so far, or no checkpoint yet", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody),
    ))]
pub async fn inclusion_proof(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    query: Result<Query<InclusionQuery>, QueryRejection>,
) -> Result<Json<InclusionView>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::from_query_rejection(&e))?;
    let chain = requested_chain(&state, &user, query.chain.as_deref())?;
    let seq = positive(
        query
            .seq
            .ok_or_else(|| ApiError::field("seq", "is required: the event's seq"))?,
        "seq",
    )?;
    let tree_size = query
        .tree_size
        .map(|size| positive(size, "tree_size"))
        .transpose()?;
    let proof = state.evidence.inclusion(&chain, seq, tree_size).await?;
    Ok(Json(InclusionView {
        chain,
        seq: proof.seq,
        leaf_index: proof.seq - 1,
        tree_size: proof.tree_size,
        leaf_hash: hex::encode(proof.leaf_hash),
        proof: hexes(&proof.proof),
        root_hash: hex::encode(proof.root_hash),
        checkpoint: proof.checkpoint.map(|c| CheckpointView::of(c, &state)),
    }))
}

/// The consistency proof between two sizes of the organisation's tree (default `to`: the
/// latest checkpoint's).
#[utoipa::path(get, path = "/v1/audit/proof/consistency", tag = "audit",
    params(ConsistencyQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the proof", body = ConsistencyView),
        (status = 400, description = "bad or missing parameter (named), or from > to", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "the role may not read the audit log", body = ErrorBody),
        (status = 404, description = "to beyond the tree built so far, or no checkpoint yet", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody),
    ))]
pub async fn consistency_proof(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    query: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> Result<Json<ConsistencyView>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::from_query_rejection(&e))?;
    let chain = requested_chain(&state, &user, query.chain.as_deref())?;
    let from = positive(
        query
            .from
            .ok_or_else(|| ApiError::field("from", "is required: the older tree size"))?,
        "from",
    )?;
    let to = query.to.map(|to| positive(to, "to")).transpose()?;
    let proof = state.evidence.consistency(&chain, from, to).await?;
    Ok(Json(ConsistencyView {
        chain,
        from: proof.from,
        to: proof.to,
        from_root: hex::encode(proof.from_root),
        to_root: hex::encode(proof.to_root),
        proof: hexes(&proof.proof),
    }))
}

/// The proof pack of one action: a zip of its record, its audit events with inclusion proofs
/// to a signed checkpoint (signed now when the latest does not cover them), the log's key,
/// its decision's policy sources, its approval votes, signals and a README
/// (docs/proof-packs.md). Admins and auditors; approvers for actions they answered.
#[utoipa::path(get, path = "/v1/proof-pack/{action_id}", tag = "audit",
    params(("action_id" = String, Path, description = "the action")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the pack", content_type = "application/zip", body = Vec<u8>),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "the role may not read proof packs, or an approver asked for an action they did not answer", body = ErrorBody),
        (status = 404, description = "no such action in the organisation", body = ErrorBody),
        (status = 503, description = "checkpoints are not signed here (no log key), or storage unavailable", body = ErrorBody),
    ))]
pub async fn proof_pack(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    axum::extract::Path(action_id): axum::extract::Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let org_id = user.org.id.clone();
    let action = state
        .store
        .get_action(&org_id, &action_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("action_id: no action {action_id}")))?;
    let votes = state.store.list_approval_votes(&org_id, &action_id).await?;
    if user.role == "approver" && !votes.iter().any(|v| v.user_id == user.user_id) {
        return Err(ApiError::Forbidden(
            "approvers may only read the proof packs of actions they answered".into(),
        ));
    }
    let decided: Vec<_> = state
        .store
        .audit_events_of_action(&org_id, &action_id)
        .await?
        .into_iter()
        .filter(|e| e.event_type == aaf_core::audit::event_types::ACTION_DECIDED)
        .take(1)
        .collect();
    let revision = state
        .store
        .open_events(&decided)
        .await?
        .into_iter()
        .next()
        .and_then(|e| e.event.data["policy_revision"].as_str().map(str::to_string));
    let policy = match revision {
        Some(revision) => state
            .store
            .get_policy_revision(&org_id, &revision)
            .await?
            .map(|record| (revision, record.bundle)),
        None => None,
    };
    let view = serde_json::to_value(super::ActionView::from(action.clone()))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let bytes = state
        .evidence
        .proof_pack(
            crate::evidence::pack::PackInput {
                action,
                votes,
                view,
                policy,
            },
            &crate::time::now_rfc3339(),
        )
        .await?;
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/zip".to_string(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"proof-pack-{action_id}.zip\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// The most events one evidence pack holds (`GET /v1/evidence`); a longer period is refused
/// with 400 naming `from`.
pub const MAX_EVIDENCE_EVENTS: u32 = 100_000;

/// `GET /v1/evidence` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EvidenceQuery {
    /// Only this agent's events (an agent of the caller's organisation); default: every
    /// event of the organisation.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Start of the period, inclusive, RFC 3339; default `to` minus 30 days.
    #[serde(default)]
    pub from: Option<String>,
    /// End of the period, exclusive, RFC 3339; default now.
    #[serde(default)]
    pub to: Option<String>,
}

/// The evidence of a period, or of one agent over a period: every audit event of the
/// organisation (of the agent) in it, each with its inclusion proof to a signed checkpoint,
/// and the consistency proof from the first checkpoint signed in the period, as a zip of the
/// proof-pack format (docs/proof-packs.md, "Evidence of a period"). Admins and auditors.
#[utoipa::path(get, path = "/v1/evidence", tag = "audit",
    params(EvidenceQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the evidence pack", content_type = "application/zip", body = Vec<u8>),
        (status = 400, description = "from/to not RFC 3339 or in the wrong order, more events than a pack holds, or an unknown parameter (named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "the role may not read evidence", body = ErrorBody),
        (status = 404, description = "no such agent, or no event in the period", body = ErrorBody),
        (status = 503, description = "checkpoints are not signed here (no log key), or storage unavailable", body = ErrorBody),
    ))]
pub async fn evidence(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    query: Result<Query<EvidenceQuery>, QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let Query(query) = query.map_err(|e| ApiError::from_query_rejection(&e))?;
    let to = match &query.to {
        Some(to) => super::compliance::parse_time(to, "to")?,
        None => time::OffsetDateTime::now_utc(),
    };
    let from = match &query.from {
        Some(from) => super::compliance::parse_time(from, "from")?,
        None => to - time::Duration::days(30),
    };
    if to <= from {
        return Err(ApiError::field("to", "must be later than from"));
    }
    if let Some(agent_id) = &query.agent_id {
        if state
            .store
            .get_agent(&user.org.id, agent_id)
            .await?
            .is_none()
        {
            return Err(ApiError::NotFound(format!(
                "agent_id: no agent {agent_id} in your organisation"
            )));
        }
    }
    let (from, to) = (
        crate::time::format_rfc3339(from),
        crate::time::format_rfc3339(to),
    );
    let bytes = state
        .evidence
        .evidence_pack(
            &user.org.id,
            query.agent_id.as_deref(),
            (&from, &to),
            MAX_EVIDENCE_EVENTS,
            &crate::time::now_rfc3339(),
        )
        .await?;
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/zip".to_string(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                "attachment; filename=\"evidence.zip\"".to_string(),
            ),
        ],
        bytes,
    )
        .into_response())
}
