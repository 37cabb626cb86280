//! The policy lifecycle API: managed policies with versions, rollback and shadow mode; data
//! documents; policy packs; the playground; stored revisions. The registry that compiles
//! and installs them is [`crate::policies`].
//!
//! Every change is validated by building the organisation's whole resulting policy set
//! (parse, compile, the load-time safety checks, one package per managed policy) before it
//! is committed; a set that does not build is answered 422 with `file:line:col` problems
//! and the set in force stays. A change commits as one unit with its audit event, the
//! revision record and a compare-and-set on the organisation's policy generation (409 when
//! another change came first), then the new set is installed atomically.

use std::sync::Arc;

use aaf_core::audit::event_types;
use aaf_core::policy::{LoadError, PolicyBundle, PolicySet, PolicySource};
use aaf_store::{Mutation, NewEvent, PolicyObject, PolicyObjectVersion, WriteUnit};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::body::{json_body, Object};
use crate::app::AppState;
use crate::auth::UserAuth;
use crate::error::{ApiError, ErrorBody, Problem};
use crate::policies::{
    build_org, check_data_path, OrgPolicies, DATA_KIND, PACKS, PACK_KIND, POLICY_KIND,
};
use crate::time::now_rfc3339;

const MODES: [&str; 2] = ["enforce", "shadow"];

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn problems(errors: &[LoadError]) -> Vec<Problem> {
    errors
        .iter()
        .map(|e| Problem {
            file: e.file.clone(),
            line: e.line,
            col: e.col,
            message: e.message.clone(),
            text: e.to_string(),
        })
        .collect()
}

fn invalid(field: &str, errors: &[LoadError]) -> ApiError {
    let first = errors.first().map(ToString::to_string).unwrap_or_default();
    ApiError::Unprocessable {
        field: Some(field.to_string()),
        message: format!(
            "the policies would not compile, so nothing changed ({} problem{}): {first}",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" }
        ),
        problems: problems(errors),
    }
}

/// A validated change of the organisation's policy objects.
struct Change {
    mutations: Vec<Mutation>,
    event_type: &'static str,
    data: Value,
    /// The body field a compile error is reported on.
    field: &'static str,
}

/// Applies a change: `edit` turns the organisation's current objects into the new ones and
/// says what to write; the resulting set is built, then committed and installed.
async fn apply_change(
    state: &AppState,
    org_id: &str,
    edit: impl FnOnce(&mut Vec<PolicyObject>) -> Result<Change, ApiError>,
) -> Result<Arc<OrgPolicies>, ApiError> {
    let generation = state.store.policy_generation(org_id).await?;
    let mut objects = state.store.list_policy_objects(org_id, None).await?;
    let change = edit(&mut objects)?;
    let base = state.registry.base();
    let options = state.registry.options();
    let built =
        tokio::task::spawn_blocking(move || build_org(&base, &objects, generation + 1, options))
            .await
            .map_err(|e| ApiError::Internal(format!("policy build failed: {e}")))?;
    let policies = Arc::new(built.map_err(|errors| invalid(change.field, &errors))?);
    let now = now_rfc3339();
    let mut data = change.data;
    if let Value::Object(map) = &mut data {
        map.insert("revision".into(), policies.set.revision().into());
    }
    let mut mutations = change.mutations;
    mutations.push(Mutation::BumpPolicyGeneration {
        org_id: org_id.to_string(),
        expected: generation,
        now: now.clone(),
    });
    mutations.push(Mutation::InsertPolicyRevision(
        policies.revision_record(org_id, &now),
    ));
    state
        .writer
        .submit(WriteUnit {
            mutations,
            action: None,
            events: vec![NewEvent {
                org_id: org_id.to_string(),
                ts: now,
                agent_id: None,
                action_id: None,
                event_type: change.event_type.to_string(),
                data,
            }],
        })
        .await
        .map_err(ApiError::from)?;
    state.registry.install(org_id, Arc::clone(&policies));
    tracing::info!(%org_id, revision = %policies.set.revision(), "organisation policies changed");
    Ok(policies)
}

// ---------------------------------------------------------------------------------------------
// Managed policies

/// `POST /v1/policies` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePolicyBody {
    /// Unique among the organisation's live policies: 1 to 64 of `A-Z a-z 0-9 . _ -`,
    /// starting with a letter or digit. Shown in `matched_policies`.
    pub name: String,
    /// The Rego module (v1 or v0 syntax), with a package of its own.
    pub rego: String,
    /// `enforce` (default) or `shadow` (evaluated and recorded, never deciding).
    #[serde(default)]
    pub mode: Option<String>,
}

/// `PUT /v1/policies/{id}` body: a new version (at least one field).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePolicyBody {
    /// The new Rego source (default: the current one).
    #[serde(default)]
    pub rego: Option<String>,
    /// The new mode (default: the current one); `enforce` promotes a shadow policy.
    #[serde(default)]
    pub mode: Option<String>,
}

/// `POST /v1/policies/{id}/rollback` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// The version to put back in force (its Rego and mode).
    pub version: i64,
}

/// A managed policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyView {
    /// Policy id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `enforce` or `shadow` (of the version in force).
    pub mode: String,
    /// The version in force.
    pub version: i64,
    /// The newest version.
    pub latest_version: i64,
    /// `active` or `disabled`.
    pub status: String,
    /// Hex SHA-256 of the Rego in force.
    pub sha256: String,
    /// The Rego in force.
    pub rego: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Who created it.
    pub created_by: Option<String>,
    /// When it was disabled (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<String>,
    /// After a change: the revision of the organisation's enforced policy set now in force
    /// (unchanged by a change of a shadow policy, which is not part of that set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

impl From<PolicyObject> for PolicyView {
    fn from(o: PolicyObject) -> Self {
        PolicyView {
            id: o.key,
            name: o.name,
            mode: o.mode,
            version: o.active_version,
            latest_version: o.latest_version,
            status: if o.disabled_at.is_some() {
                "disabled".into()
            } else {
                "active".into()
            },
            sha256: o.sha256,
            rego: o.body,
            created_at: o.created_at,
            updated_at: o.updated_at,
            created_by: o.created_by,
            disabled_at: o.disabled_at,
            revision: None,
        }
    }
}

/// The organisation's managed policies.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyList {
    /// By name; disabled ones included.
    pub policies: Vec<PolicyView>,
}

/// One version of a managed policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyVersionView {
    /// 1-based.
    pub version: i64,
    /// Whether it is the version in force.
    pub active: bool,
    /// `enforce` or `shadow`.
    pub mode: String,
    /// Hex SHA-256 of the Rego.
    pub sha256: String,
    /// Who wrote it.
    pub author: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// The Rego.
    pub rego: String,
}

/// Every version of a managed policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyVersionList {
    /// Policy id.
    pub policy_id: String,
    /// Oldest first.
    pub versions: Vec<PolicyVersionView>,
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let mut chars = name.chars();
    let ok = name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(ApiError::field(
            "name",
            "must be 1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit",
        ))
    }
}

fn check_mode(mode: &str) -> Result<(), ApiError> {
    if MODES.contains(&mode) {
        Ok(())
    } else {
        Err(ApiError::field(
            "mode",
            format!("must be one of {MODES:?}, not {mode:?}"),
        ))
    }
}

fn check_rego(state: &AppState, rego: &str) -> Result<(), ApiError> {
    let max = state.config.policy_engine.max_rego_bytes;
    if rego.trim().is_empty() {
        return Err(ApiError::field("rego", "must not be empty"));
    }
    if rego.len() > max {
        return Err(ApiError::field(
            "rego",
            format!(
                "is {} bytes, more than policy_engine.max_rego_bytes ({max})",
                rego.len()
            ),
        ));
    }
    Ok(())
}

/// The live policy `id` among `objects` (404 otherwise; 409 when disabled).
fn live_policy<'a>(
    objects: &'a mut [PolicyObject],
    id: &str,
) -> Result<&'a mut PolicyObject, ApiError> {
    let o = objects
        .iter_mut()
        .find(|o| o.kind == POLICY_KIND && o.key == id)
        .ok_or_else(|| ApiError::NotFound(format!("policy {id}")))?;
    if o.disabled_at.is_some() {
        return Err(ApiError::Conflict(format!(
            "policy {id} is disabled; its history is kept, but it cannot change (create a new policy)"
        )));
    }
    Ok(o)
}

async fn policy_view(state: &AppState, org_id: &str, id: &str) -> Result<PolicyView, ApiError> {
    state
        .store
        .get_policy_object(org_id, POLICY_KIND, id)
        .await?
        .map(PolicyView::from)
        .ok_or_else(|| ApiError::NotFound(format!("policy {id}")))
}

fn policy_event_data(o: &PolicyObject, author: &str) -> Value {
    serde_json::json!({
        "policy_id": o.key,
        "name": o.name,
        "version": o.active_version,
        "mode": o.mode,
        "sha256": o.sha256,
        "author": author,
    })
}

/// Creates a managed policy (version 1), validated with the organisation's whole policy set.
#[utoipa::path(post, path = "/v1/policies", tag = "policies",
    request_body = CreatePolicyBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "created and in force (or in shadow mode)", body = PolicyView),
        (status = 400, description = "bad name, mode or rego field", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 409, description = "a live policy has this name, too many policies, or a concurrent change", body = ErrorBody),
        (status = 422, description = "the policy does not parse, compile or pass the safety checks; `problems` locate each error", body = ErrorBody),
    ))]
pub async fn create_policy(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    body: Result<Json<Object<CreatePolicyBody>>, JsonRejection>,
) -> Result<(StatusCode, Json<PolicyView>), ApiError> {
    let body = json_body(&state, body)?;
    check_name(&body.name)?;
    check_rego(&state, &body.rego)?;
    let mode = body.mode.unwrap_or_else(|| "enforce".into());
    check_mode(&mode)?;
    let id = uuid::Uuid::now_v7().to_string();
    let max = state.config.policy_engine.max_policies;
    let now = now_rfc3339();
    let org_id = admin.org.id.clone();
    let policies = apply_change(&state, &org_id, |objects| {
        let live: Vec<&PolicyObject> = objects
            .iter()
            .filter(|o| o.kind == POLICY_KIND && o.disabled_at.is_none())
            .collect();
        if live.iter().any(|o| o.name == body.name) {
            return Err(ApiError::Conflict(format!(
                "a live policy is named {:?}; update it with PUT /v1/policies/{{id}} or choose another name",
                body.name
            )));
        }
        if live.len() >= max {
            return Err(ApiError::Conflict(format!(
                "the organisation has {} live policies, the most allowed (policy_engine.max_policies); disable one first",
                live.len()
            )));
        }
        let object = PolicyObject {
            org_id: org_id.clone(),
            kind: POLICY_KIND.into(),
            key: id.clone(),
            name: body.name.clone(),
            active_version: 1,
            latest_version: 1,
            created_at: now.clone(),
            updated_at: now.clone(),
            created_by: Some(admin.name.clone()),
            disabled_at: None,
            body: body.rego.clone(),
            mode: mode.clone(),
            sha256: sha256_hex(&body.rego),
        };
        let data = policy_event_data(&object, &admin.name);
        let mutation = put_version(&object, &admin.name);
        objects.push(object);
        Ok(Change {
            mutations: vec![mutation],
            event_type: event_types::POLICY_CREATED,
            data,
            field: "rego",
        })
    })
    .await?;
    let mut view = policy_view(&state, &org_id, &id).await?;
    view.revision = Some(policies.set.revision().to_string());
    Ok((StatusCode::CREATED, Json(view)))
}

/// The next version of the object `(kind, key)` with `body`, in force at once: version 1 of
/// a new object when there is none, else its next version. `objects` is updated.
fn next_version(
    objects: &mut Vec<PolicyObject>,
    org_id: &str,
    kind: &str,
    key: &str,
    body: &str,
    author: &str,
    now: &str,
) -> PolicyObject {
    let sha256 = sha256_hex(body);
    if let Some(o) = objects.iter_mut().find(|o| o.kind == kind && o.key == key) {
        o.latest_version += 1;
        o.active_version = o.latest_version;
        o.body = body.to_string();
        o.sha256 = sha256;
        o.updated_at = now.to_string();
        return o.clone();
    }
    let o = PolicyObject {
        org_id: org_id.to_string(),
        kind: kind.to_string(),
        key: key.to_string(),
        name: key.to_string(),
        active_version: 1,
        latest_version: 1,
        created_at: now.to_string(),
        updated_at: now.to_string(),
        created_by: Some(author.to_string()),
        disabled_at: None,
        body: body.to_string(),
        mode: "enforce".into(),
        sha256,
    };
    objects.push(o.clone());
    o
}

/// The write of `o`'s newest version (`o.latest_version`) with `o.active_version` in force.
fn put_version(o: &PolicyObject, author: &str) -> Mutation {
    Mutation::PutPolicyObject {
        version: PolicyObjectVersion {
            org_id: o.org_id.clone(),
            kind: o.kind.clone(),
            key: o.key.clone(),
            version: o.latest_version,
            body: o.body.clone(),
            mode: o.mode.clone(),
            sha256: o.sha256.clone(),
            author: Some(author.to_string()),
            created_at: o.updated_at.clone(),
        },
        name: o.name.clone(),
        active_version: o.active_version,
    }
}

/// The organisation's managed policies (disabled ones included), each with its Rego in
/// force.
#[utoipa::path(get, path = "/v1/policies", tag = "policies",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the policies", body = PolicyList),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
    ))]
pub async fn list_policies(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
) -> Result<Json<PolicyList>, ApiError> {
    let policies = state
        .store
        .list_policy_objects(&user.org.id, Some(POLICY_KIND))
        .await?
        .into_iter()
        .map(PolicyView::from)
        .collect();
    Ok(Json(PolicyList { policies }))
}

/// One managed policy with its Rego in force.
#[utoipa::path(get, path = "/v1/policies/{id}", tag = "policies",
    params(("id" = String, Path, description = "policy id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the policy", body = PolicyView),
        (status = 404, description = "no such policy in the organisation", body = ErrorBody),
    ))]
pub async fn get_policy(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    Path(id): Path<String>,
) -> Result<Json<PolicyView>, ApiError> {
    Ok(Json(policy_view(&state, &user.org.id, &id).await?))
}

/// Writes a new version of a managed policy and puts it in force (new Rego, a new mode, or
/// both), validated with the organisation's whole policy set.
#[utoipa::path(put, path = "/v1/policies/{id}", tag = "policies",
    params(("id" = String, Path, description = "policy id")),
    request_body = UpdatePolicyBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the new version is in force", body = PolicyView),
        (status = 400, description = "bad rego or mode field, or neither given", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such policy", body = ErrorBody),
        (status = 409, description = "the policy is disabled, or a concurrent change", body = ErrorBody),
        (status = 422, description = "the new version would not compile; the version in force stays", body = ErrorBody),
    ))]
pub async fn update_policy(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    Path(id): Path<String>,
    body: Result<Json<Object<UpdatePolicyBody>>, JsonRejection>,
) -> Result<Json<PolicyView>, ApiError> {
    let body = json_body(&state, body)?;
    if body.rego.is_none() && body.mode.is_none() {
        return Err(ApiError::BadRequest {
            field: None,
            message: "give a new rego, a new mode, or both".into(),
        });
    }
    if let Some(rego) = &body.rego {
        check_rego(&state, rego)?;
    }
    if let Some(mode) = &body.mode {
        check_mode(mode)?;
    }
    let now = now_rfc3339();
    let org_id = admin.org.id.clone();
    let policies = apply_change(&state, &org_id, |objects| {
        let o = live_policy(objects, &id)?;
        if let Some(rego) = &body.rego {
            o.body = rego.clone();
            o.sha256 = sha256_hex(rego);
        }
        if let Some(mode) = &body.mode {
            o.mode = mode.clone();
        }
        o.latest_version += 1;
        o.active_version = o.latest_version;
        o.updated_at = now.clone();
        Ok(Change {
            mutations: vec![put_version(o, &admin.name)],
            event_type: event_types::POLICY_UPDATED,
            data: policy_event_data(o, &admin.name),
            field: "rego",
        })
    })
    .await?;
    let mut view = policy_view(&state, &org_id, &id).await?;
    view.revision = Some(policies.set.revision().to_string());
    Ok(Json(view))
}

/// Every version of a managed policy, oldest first.
#[utoipa::path(get, path = "/v1/policies/{id}/versions", tag = "policies",
    params(("id" = String, Path, description = "policy id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the versions", body = PolicyVersionList),
        (status = 404, description = "no such policy", body = ErrorBody),
    ))]
pub async fn list_policy_versions(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    Path(id): Path<String>,
) -> Result<Json<PolicyVersionList>, ApiError> {
    let policy = policy_view(&state, &user.org.id, &id).await?;
    let versions = state
        .store
        .list_policy_object_versions(&user.org.id, POLICY_KIND, &id)
        .await?
        .into_iter()
        .map(|v| PolicyVersionView {
            active: v.version == policy.version,
            version: v.version,
            mode: v.mode,
            sha256: v.sha256,
            author: v.author,
            created_at: v.created_at,
            rego: v.body,
        })
        .collect();
    Ok(Json(PolicyVersionList {
        policy_id: id,
        versions,
    }))
}

/// Puts an earlier (or later) version of a managed policy back in force, its Rego and mode,
/// validated with the organisation's current policy set. No version is written; history is
/// unchanged.
#[utoipa::path(post, path = "/v1/policies/{id}/rollback", tag = "policies",
    params(("id" = String, Path, description = "policy id")),
    request_body = RollbackBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the version is in force", body = PolicyView),
        (status = 400, description = "no such version", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such policy", body = ErrorBody),
        (status = 409, description = "the policy is disabled, or a concurrent change", body = ErrorBody),
        (status = 422, description = "that version would not compile with the current policies", body = ErrorBody),
    ))]
pub async fn rollback_policy(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    Path(id): Path<String>,
    body: Result<Json<Object<RollbackBody>>, JsonRejection>,
) -> Result<Json<PolicyView>, ApiError> {
    let body = json_body(&state, body)?;
    let org_id = admin.org.id.clone();
    let versions = state
        .store
        .list_policy_object_versions(&org_id, POLICY_KIND, &id)
        .await?;
    let now = now_rfc3339();
    let policies = apply_change(&state, &org_id, |objects| {
        let o = live_policy(objects, &id)?;
        let target = versions
            .iter()
            .find(|v| v.version == body.version)
            .ok_or_else(|| {
                ApiError::field(
                    "version",
                    format!(
                        "policy {id} has no version {}; it has 1 to {}",
                        body.version, o.latest_version
                    ),
                )
            })?;
        let from = o.active_version;
        o.body = target.body.clone();
        o.mode = target.mode.clone();
        o.sha256 = target.sha256.clone();
        o.active_version = target.version;
        o.updated_at = now.clone();
        let mut data = policy_event_data(o, &admin.name);
        if let Value::Object(map) = &mut data {
            map.insert("from_version".into(), from.into());
        }
        Ok(Change {
            mutations: vec![Mutation::ActivatePolicyObjectVersion {
                org_id: o.org_id.clone(),
                kind: POLICY_KIND.into(),
                key: o.key.clone(),
                version: target.version,
                now: now.clone(),
            }],
            event_type: event_types::POLICY_ROLLED_BACK,
            data,
            field: "version",
        })
    })
    .await?;
    let mut view = policy_view(&state, &org_id, &id).await?;
    view.revision = Some(policies.set.revision().to_string());
    Ok(Json(view))
}

/// Disables a managed policy for good: it stops being evaluated at once; its versions are
/// kept and stay readable.
#[utoipa::path(delete, path = "/v1/policies/{id}", tag = "policies",
    params(("id" = String, Path, description = "policy id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "disabled", body = PolicyView),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such policy", body = ErrorBody),
        (status = 409, description = "already disabled, or a concurrent change", body = ErrorBody),
    ))]
pub async fn delete_policy(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    Path(id): Path<String>,
) -> Result<Json<PolicyView>, ApiError> {
    let now = now_rfc3339();
    let org_id = admin.org.id.clone();
    let policies = apply_change(&state, &org_id, |objects| {
        let o = live_policy(objects, &id)?;
        o.disabled_at = Some(now.clone());
        Ok(Change {
            mutations: vec![Mutation::DisablePolicyObject {
                org_id: o.org_id.clone(),
                kind: POLICY_KIND.into(),
                key: o.key.clone(),
                now: now.clone(),
            }],
            event_type: event_types::POLICY_DISABLED,
            data: policy_event_data(o, &admin.name),
            field: "id",
        })
    })
    .await?;
    let mut view = policy_view(&state, &org_id, &id).await?;
    view.revision = Some(policies.set.revision().to_string());
    Ok(Json(view))
}

// ---------------------------------------------------------------------------------------------
// Shadow report

/// How many actions had one pair of verdicts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShadowCountView {
    /// The verdict in force.
    pub enforced: String,
    /// The shadow policy's would-be verdict.
    pub shadow: String,
    /// Actions.
    pub count: u64,
}

/// An action where the shadow policy would have changed the outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShadowSample {
    /// The action (`GET /v1/actions/{id}`).
    pub action_id: String,
    /// The policy version evaluated.
    pub version: i64,
    /// The verdict in force.
    pub enforced: String,
    /// The would-be verdict.
    pub shadow: String,
    /// RFC 3339.
    pub created_at: String,
}

/// Where a shadow policy would have changed outcomes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShadowReport {
    /// Policy id.
    pub policy_id: String,
    /// Its name.
    pub name: String,
    /// Its mode now.
    pub mode: String,
    /// Actions evaluated while it was in shadow mode.
    pub total: u64,
    /// Of those, where the would-be verdict differs from the one in force.
    pub differing: u64,
    /// Counts per (enforced, shadow) verdicts.
    pub counts: Vec<ShadowCountView>,
    /// Up to 20 of the latest differing actions.
    pub samples: Vec<ShadowSample>,
}

/// Summarises where a shadow policy's would-be decisions differed from the enforced ones.
#[utoipa::path(get, path = "/v1/policies/{id}/shadow-report", tag = "policies",
    params(("id" = String, Path, description = "policy id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the report", body = ShadowReport),
        (status = 404, description = "no such policy", body = ErrorBody),
    ))]
pub async fn shadow_report(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    Path(id): Path<String>,
) -> Result<Json<ShadowReport>, ApiError> {
    let policy = policy_view(&state, &user.org.id, &id).await?;
    let (counts, samples) = state.store.shadow_report(&user.org.id, &id, 20).await?;
    let total = counts.iter().map(|c| c.count).sum();
    let differing = counts
        .iter()
        .filter(|c| c.enforced != c.shadow)
        .map(|c| c.count)
        .sum();
    Ok(Json(ShadowReport {
        policy_id: id,
        name: policy.name,
        mode: policy.mode,
        total,
        differing,
        counts: counts
            .into_iter()
            .map(|c| ShadowCountView {
                enforced: c.enforced,
                shadow: c.shadow,
                count: c.count,
            })
            .collect(),
        samples: samples
            .into_iter()
            .map(|s| ShadowSample {
                action_id: s.action_id,
                version: s.policy_version,
                enforced: s.enforced,
                shadow: s.shadow,
                created_at: s.created_at,
            })
            .collect(),
    }))
}

// ---------------------------------------------------------------------------------------------
// Data documents

/// A data document.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataView {
    /// Its path (`a/b`), visible to Rego as `data.a.b`.
    pub path: String,
    /// The version shown: the one in force, or the one asked for with `?version=`.
    pub version: i64,
    /// The newest version.
    pub latest_version: i64,
    /// Hex SHA-256 of its JSON text.
    pub sha256: String,
    /// RFC 3339: when this version was written.
    pub updated_at: String,
    /// The document: any JSON value.
    pub value: Value,
    /// After a change: the organisation's policy set revision now in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

fn data_view(o: PolicyObject) -> Result<DataView, ApiError> {
    let value = serde_json::from_str(&o.body).map_err(|e| {
        ApiError::Internal(format!("stored data document {} is not JSON: {e}", o.key))
    })?;
    Ok(DataView {
        path: o.key,
        version: o.active_version,
        latest_version: o.latest_version,
        sha256: o.sha256,
        updated_at: o.updated_at,
        value,
        revision: None,
    })
}

/// The organisation's data documents.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataList {
    /// By path.
    pub documents: Vec<DataView>,
}

/// Writes a data document (a new version, in force at once), validated with the
/// organisation's whole policy set. The body is the document: any JSON value.
#[utoipa::path(put, path = "/v1/data/{path}", tag = "policies",
    params(("path" = String, Path, description = "1 to 8 `/`-separated Rego identifiers, e.g. `packs/financial`")),
    request_body(content = Value, description = "the document (any JSON value)"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "written and in force", body = DataView),
        (status = 400, description = "bad path or body", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 409, description = "a concurrent change", body = ErrorBody),
        (status = 422, description = "the policies would not compile or evaluate with this data", body = ErrorBody),
    ))]
pub async fn put_data(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    Path(path): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<DataView>, ApiError> {
    // A data document is any JSON value (OPA's Data API), not only an object.
    let Json(value) = body.map_err(|r| state.json_rejection(r))?;
    // The revision hashes the data in RFC 8785 form, which has no exact form for integers
    // beyond 2^53-1 (I-JSON, RFC 7493 section 2.2).
    if let Some(found) = aaf_core::canonical::find_inexact_number(&value, "value") {
        return Err(ApiError::field(found.path.clone(), found.to_string()));
    }
    let text = serde_json::to_string(&value).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(pack) = path.strip_prefix("packs/").and_then(crate::policies::pack) {
        check_pack_parameters(&state, pack, &value).await?;
    }
    let now = now_rfc3339();
    let org_id = admin.org.id.clone();
    let policies = apply_change(&state, &org_id, |objects| {
        let others: Vec<&str> = objects
            .iter()
            .filter(|o| o.kind == DATA_KIND && o.disabled_at.is_none())
            .map(|o| o.key.as_str())
            .collect();
        check_data_path(&path, &others).map_err(|m| ApiError::field("path", m))?;
        let object = next_version(objects, &org_id, DATA_KIND, &path, &text, &admin.name, &now);
        Ok(Change {
            mutations: vec![put_version(&object, &admin.name)],
            event_type: event_types::DATA_UPDATED,
            data: serde_json::json!({
                "path": object.key,
                "version": object.active_version,
                "sha256": object.sha256,
                "author": admin.name,
            }),
            field: "value",
        })
    })
    .await?;
    let stored = state
        .store
        .get_policy_object(&org_id, DATA_KIND, &path)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("data document {path} vanished")))?;
    let mut view = data_view(stored)?;
    view.revision = Some(policies.set.revision().to_string());
    Ok(Json(view))
}

/// `GET /v1/data/{path}` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DataQuery {
    /// An earlier (or the latest) version to read instead of the one in force; versions
    /// are numbered from 1.
    #[param(minimum = 1)]
    pub version: Option<i64>,
}

/// Refuses (422) parameters that the pack itself reports as invalid (its `config_errors`),
/// whether or not it is enabled: an enabled pack with invalid parameters denies every action.
async fn check_pack_parameters(
    state: &AppState,
    pack: &'static crate::policies::Pack,
    value: &Value,
) -> Result<(), ApiError> {
    let bundle = PolicyBundle {
        sources: vec![PolicySource {
            path: crate::policies::pack_path(pack.name),
            rego: pack.rego.to_string(),
        }],
        data: serde_json::json!({"packs": {pack.name: value}}),
        labels: Default::default(),
    };
    let options = state.registry.options();
    let rule = format!("data.aaf.packs.{}.config_errors", pack.name);
    let errors = tokio::task::spawn_blocking(move || {
        PolicySet::load_bundle(bundle, options)
            .map_err(|e| {
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .and_then(|set| set.eval_rule_json(&rule))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("pack parameter check failed: {e}")))?
    .map_err(|e| ApiError::Internal(format!("pack parameter check failed: {e}")))?;
    let messages: Vec<String> = errors
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if messages.is_empty() {
        return Ok(());
    }
    let problems = messages
        .iter()
        .map(|m| Problem {
            file: format!("data.packs.{}", pack.name),
            line: 0,
            col: 0,
            message: m.clone(),
            text: format!("data.packs.{}: {m}", pack.name),
        })
        .collect();
    Err(ApiError::Unprocessable {
        field: Some("value".into()),
        message: format!(
            "invalid parameters for the {} pack, so nothing changed: {}",
            pack.name,
            messages.join("; ")
        ),
        problems,
    })
}

/// One data document: the version in force, or any stored version with `?version=N`.
#[utoipa::path(get, path = "/v1/data/{path}", tag = "policies",
    params(("path" = String, Path, description = "the document's path"), DataQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the document", body = DataView),
        (status = 400, description = "bad query", body = ErrorBody),
        (status = 404, description = "no such document or version", body = ErrorBody),
    ))]
pub async fn get_data(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    Path(path): Path<String>,
    query: Result<axum::extract::Query<DataQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DataView>, ApiError> {
    let axum::extract::Query(query) = query.map_err(|e| ApiError::from_query_rejection(&e))?;
    if query.version.is_some_and(|v| v < 1) {
        return Err(ApiError::field(
            "version",
            "must be at least 1 (versions are numbered from 1)",
        ));
    }
    let o = state
        .store
        .get_policy_object(&user.org.id, DATA_KIND, &path)
        .await?
        .filter(|o| o.disabled_at.is_none())
        .ok_or_else(|| ApiError::NotFound(format!("data document {path}")))?;
    let Some(wanted) = query.version.filter(|v| *v != o.active_version) else {
        return Ok(Json(data_view(o)?));
    };
    let version = state
        .store
        .list_policy_object_versions(&user.org.id, DATA_KIND, &path)
        .await?
        .into_iter()
        .find(|v| v.version == wanted)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "data document {path} has no version {wanted}; it has 1 to {}",
                o.latest_version
            ))
        })?;
    let mut view = data_view(PolicyObject {
        body: version.body,
        sha256: version.sha256,
        updated_at: version.created_at,
        active_version: version.version,
        ..o
    })?;
    view.version = wanted;
    Ok(Json(view))
}

/// The organisation's data documents.
#[utoipa::path(get, path = "/v1/data", tag = "policies",
    security(("bearer" = [])),
    responses((status = 200, description = "the documents", body = DataList)))]
pub async fn list_data(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
) -> Result<Json<DataList>, ApiError> {
    let documents = state
        .store
        .list_policy_objects(&user.org.id, Some(DATA_KIND))
        .await?
        .into_iter()
        .filter(|o| o.disabled_at.is_none())
        .map(data_view)
        .collect::<Result<_, _>>()?;
    Ok(Json(DataList { documents }))
}

// ---------------------------------------------------------------------------------------------
// Policy packs

/// A built-in policy pack and its state in the organisation.
#[derive(Debug, Serialize, ToSchema)]
pub struct PackView {
    /// `security`, `compliance` or `financial`.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Its Rego package.
    pub package: String,
    /// The data document its parameters are read from (`PUT /v1/data/{data_path}`).
    pub data_path: String,
    /// Its parameters (keys of that document); see `docs/policy-packs.md`.
    pub parameters: Vec<String>,
    /// Whether it is enabled for the organisation.
    pub enabled: bool,
    /// When it was last enabled or disabled (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Its Rego source.
    pub rego: String,
}

/// The built-in policy packs.
#[derive(Debug, Serialize, ToSchema)]
pub struct PackList {
    /// By name.
    pub packs: Vec<PackView>,
}

async fn pack_views(state: &AppState, org_id: &str) -> Result<Vec<PackView>, ApiError> {
    let states = state
        .store
        .list_policy_objects(org_id, Some(PACK_KIND))
        .await?;
    Ok(PACKS
        .iter()
        .map(|p| {
            let s = states.iter().find(|o| o.key == p.name);
            PackView {
                name: p.name.into(),
                description: p.description.into(),
                package: format!("aaf.packs.{}", p.name),
                data_path: format!("packs/{}", p.name),
                parameters: p.parameters.iter().map(|s| s.to_string()).collect(),
                enabled: s.is_some_and(|o| o.body == "enabled"),
                updated_at: s.map(|o| o.updated_at.clone()),
                rego: p.rego.into(),
            }
        })
        .collect())
}

/// The built-in policy packs and whether each is enabled for the organisation.
#[utoipa::path(get, path = "/v1/policy-packs", tag = "policies",
    security(("bearer" = [])),
    responses((status = 200, description = "the packs", body = PackList)))]
pub async fn list_packs(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
) -> Result<Json<PackList>, ApiError> {
    Ok(Json(PackList {
        packs: pack_views(&state, &user.org.id).await?,
    }))
}

async fn set_pack(
    state: &AppState,
    admin: &aaf_store::TokenPrincipal,
    name: &str,
    enable: bool,
) -> Result<Json<PackView>, ApiError> {
    let pack = crate::policies::pack(name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "policy pack {name:?}; the packs are {:?}",
            PACKS.iter().map(|p| p.name).collect::<Vec<_>>()
        ))
    })?;
    let wanted = if enable { "enabled" } else { "disabled" };
    let current = state
        .store
        .get_policy_object(&admin.org.id, PACK_KIND, pack.name)
        .await?;
    let already = match &current {
        Some(o) => o.body == wanted,
        None => !enable,
    };
    if !already {
        let now = now_rfc3339();
        let org_id = admin.org.id.clone();
        apply_change(state, &org_id, |objects| {
            let object = next_version(
                objects,
                &org_id,
                PACK_KIND,
                pack.name,
                wanted,
                &admin.name,
                &now,
            );
            Ok(Change {
                mutations: vec![put_version(&object, &admin.name)],
                event_type: if enable {
                    event_types::PACK_ENABLED
                } else {
                    event_types::PACK_DISABLED
                },
                data: serde_json::json!({
                    "pack": pack.name,
                    "version": object.active_version,
                    "sha256": sha256_hex(pack.rego),
                    "author": admin.name,
                }),
                field: "name",
            })
        })
        .await?;
    }
    pack_views(state, &admin.org.id)
        .await?
        .into_iter()
        .find(|p| p.name == pack.name)
        .map(Json)
        .ok_or_else(|| ApiError::Internal("pack vanished".into()))
}

/// Enables a built-in policy pack for the organisation, at once (no change when enabled
/// already).
#[utoipa::path(post, path = "/v1/policy-packs/{name}/enable", tag = "policies",
    params(("name" = String, Path, description = "pack name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "enabled", body = PackView),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such pack", body = ErrorBody),
        (status = 409, description = "a concurrent change", body = ErrorBody),
        (status = 422, description = "the pack does not compile with the organisation's policies (e.g. a package clash)", body = ErrorBody),
    ))]
pub async fn enable_pack(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    Path(name): Path<String>,
) -> Result<Json<PackView>, ApiError> {
    set_pack(&state, &admin, &name, true).await
}

/// Disables a built-in policy pack for the organisation, at once.
#[utoipa::path(post, path = "/v1/policy-packs/{name}/disable", tag = "policies",
    params(("name" = String, Path, description = "pack name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "disabled", body = PackView),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such pack", body = ErrorBody),
    ))]
pub async fn disable_pack(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    Path(name): Path<String>,
) -> Result<Json<PackView>, ApiError> {
    set_pack(&state, &admin, &name, false).await
}

// ---------------------------------------------------------------------------------------------
// Playground and revisions

/// `POST /v1/playground` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaygroundBody {
    /// Unsaved Rego (one module).
    pub rego: String,
    /// The input document (see `docs/policies.md`).
    #[schema(value_type = Object)]
    pub input: Value,
    /// A base document for `data` (default: none; with `with_org_policies`, the
    /// organisation's data documents plus this).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    /// Evaluate together with the organisation's policies in force (default false: alone).
    #[serde(default)]
    pub with_org_policies: bool,
}

/// The playground's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlaygroundResult {
    /// The combined decision.
    pub decision: String,
    /// Its reason.
    pub reason: String,
    /// The policies whose decision equals it.
    pub matched_policies: Vec<String>,
    /// Per policy: decision, reason, evaluation time, the lines it evaluated.
    #[schema(value_type = Vec<Object>)]
    pub policies: Vec<aaf_core::policy::PolicyExplanation>,
}

/// Evaluates unsaved Rego against an input, stores nothing, and explains the result.
#[utoipa::path(post, path = "/v1/playground", tag = "policies",
    request_body = PlaygroundBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the decision and its explanation", body = PlaygroundResult),
        (status = 400, description = "bad body", body = ErrorBody),
        (status = 422, description = "the Rego does not compile; `problems` locate each error", body = ErrorBody),
    ))]
pub async fn playground(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    body: Result<Json<Object<PlaygroundBody>>, JsonRejection>,
) -> Result<Json<PlaygroundResult>, ApiError> {
    let body = json_body(&state, body)?;
    check_rego(&state, &body.rego)?;
    if !body.input.is_object() {
        return Err(ApiError::field("input", "must be a JSON object"));
    }
    let mut bundle = if body.with_org_policies {
        let policies = crate::policies::for_org(&state, &user.org.id)
            .await
            .map_err(ApiError::Unavailable)?;
        (*policies.bundle).clone()
    } else {
        PolicyBundle::default()
    };
    match body.data {
        None | Some(Value::Null) => {}
        Some(Value::Object(extra)) => {
            if let Some(found) = aaf_core::canonical::find_inexact_member(&extra, "data") {
                return Err(ApiError::field(found.path.clone(), found.to_string()));
            }
            let mut data = match bundle.data.take() {
                Value::Object(m) => m,
                _ => serde_json::Map::new(),
            };
            data.extend(extra);
            bundle.data = Value::Object(data);
        }
        Some(_) => return Err(ApiError::field("data", "must be a JSON object")),
    }
    bundle.sources.push(PolicySource {
        path: "playground.rego".into(),
        rego: body.rego,
    });
    let options = state.registry.options();
    let input = body.input;
    let explanation = tokio::task::spawn_blocking(move || {
        PolicySet::load_bundle(bundle, options).map(|set| set.explain(&input))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("playground failed: {e}")))?
    .map_err(|errors| invalid("rego", &errors))?;
    Ok(Json(PlaygroundResult {
        decision: explanation.decision.verdict.as_str().to_string(),
        reason: explanation.decision.reason,
        matched_policies: explanation.decision.matched_policies,
        policies: explanation.policies,
    }))
}

/// What a policy set revision was built from.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevisionView {
    /// The revision (hex SHA-256).
    pub revision: String,
    /// When it was first recorded (RFC 3339).
    pub created_at: String,
    /// The modules: `[{"path", "rego"}]`.
    #[schema(value_type = Vec<Object>)]
    pub sources: Value,
    /// The base document.
    #[schema(value_type = Object)]
    pub data: Value,
}

/// The sources and data a policy set revision was built from: with a decision's stored
/// input, enough to replay it (`aaf policy eval`).
#[utoipa::path(get, path = "/v1/policy-revisions/{revision}", tag = "policies",
    params(("revision" = String, Path, description = "hex SHA-256, as in a decision's policy_revision")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the revision", body = RevisionView),
        (status = 404, description = "not a revision of the organisation", body = ErrorBody),
    ))]
pub async fn get_revision(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    Path(revision): Path<String>,
) -> Result<Json<RevisionView>, ApiError> {
    let record = state
        .store
        .get_policy_revision(&user.org.id, &revision)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("policy revision {revision}")))?;
    Ok(Json(RevisionView {
        revision: record.revision,
        created_at: record.created_at,
        sources: record.bundle.get("sources").cloned().unwrap_or(Value::Null),
        data: record.bundle.get("data").cloned().unwrap_or(Value::Null),
    }))
}
