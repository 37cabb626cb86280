//! `GET /v1/compliance/report` (docs/compliance.md): the evidence AAF holds for a period,
//! per control of a framework, and the gaps it can see. The mapping and the report are
//! [`aaf_core::compliance`]'s; this handler gathers the evidence snapshot (event counts and
//! samples, checkpoints, the organisation's settings) and answers JSON or HTML.

use aaf_core::compliance::{
    render_html, report, CheckpointRef, EventEvidence, EvidenceSnapshot, Mapping, OrgFacts,
    RetentionFacts, MAX_SAMPLES,
};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::IntoParams;

use crate::app::AppState;
use crate::auth::UserAuth;
use crate::error::{ApiError, ErrorBody};

/// `GET /v1/compliance/report` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// The framework: `soc2`, `hipaa`, `nist-800-53` (or `fedramp`), `iso27001`,
    /// `eu-ai-act` (any case).
    pub framework: Option<String>,
    /// Start of the period, inclusive, RFC 3339; default `to` minus 90 days.
    #[serde(default)]
    pub from: Option<String>,
    /// End of the period, exclusive, RFC 3339; default now.
    #[serde(default)]
    pub to: Option<String>,
    /// `json` or `html`; default HTML when `Accept` prefers `text/html`, else JSON.
    #[serde(default)]
    pub format: Option<String>,
}

/// The longest period a report covers, in days (ten years): the counts are one pass over the
/// organisation's chain whatever the period, but a bound keeps the parameters sane.
const MAX_PERIOD_DAYS: i64 = 3660;

pub(crate) fn parse_time(value: &str, field: &'static str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(value, &Rfc3339).map_err(|e| {
        ApiError::field(
            field,
            format!("must be an RFC 3339 timestamp such as 2026-01-01T00:00:00Z: {e}"),
        )
    })
}

/// Whether `Accept` prefers `text/html` to `application/json` (a browser).
fn prefers_html(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let quality = |media: &str| -> f32 {
        accept
            .split(',')
            .filter_map(|part| {
                let mut pieces = part.split(';').map(str::trim);
                let kind = pieces.next()?;
                if kind != media {
                    return None;
                }
                let q = pieces
                    .find_map(|p| p.strip_prefix("q="))
                    .and_then(|q| q.parse().ok())
                    .unwrap_or(1.0);
                Some(q)
            })
            .fold(0.0, f32::max)
    };
    quality("text/html") > quality("application/json")
}

/// The per-control evidence AAF holds for the caller's organisation over a period, for one
/// framework, and the gaps it can see (docs/compliance.md). JSON, or a self-contained HTML
/// page.
#[utoipa::path(get, path = "/v1/compliance/report", tag = "audit",
    params(ReportQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the report (application/json, or text/html with format=html)", body = Object),
        (status = 400, description = "framework missing or unknown, from/to not RFC 3339 or in the wrong order, format unknown, or an unknown parameter (named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "the role may not read compliance reports", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody),
    ))]
pub async fn compliance_report(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    headers: HeaderMap,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::from_query_rejection(&e))?;
    let id = query.framework.as_deref().ok_or_else(|| {
        ApiError::field(
            "framework",
            format!(
                "is required: one of {}",
                Mapping::builtin().ids().join(", ")
            ),
        )
    })?;
    let framework = Mapping::builtin()
        .framework(id)
        .map_err(|e| ApiError::field("framework", e.to_string()))?;
    let html = match query.format.as_deref() {
        Some("json") => false,
        Some("html") => true,
        Some(_) => return Err(ApiError::field("format", "must be json or html")),
        None => prefers_html(&headers),
    };
    let to = match &query.to {
        Some(to) => parse_time(to, "to")?,
        None => OffsetDateTime::now_utc(),
    };
    let from = match &query.from {
        Some(from) => parse_time(from, "from")?,
        None => to - time::Duration::days(90),
    };
    if to <= from {
        return Err(ApiError::field("to", "must be later than from"));
    }
    if to - from > time::Duration::days(MAX_PERIOD_DAYS) {
        return Err(ApiError::field(
            "from",
            format!("the period may be at most {MAX_PERIOD_DAYS} days"),
        ));
    }
    let (from, to) = (
        crate::time::format_rfc3339(from),
        crate::time::format_rfc3339(to),
    );
    let snapshot = snapshot(&state, &user.org, &from, &to).await?;
    let report = report(framework, &snapshot);
    if html {
        Ok((
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'",
                ),
            ],
            render_html(&report),
        )
            .into_response())
    } else {
        Ok(Json(report).into_response())
    }
}

/// The evidence snapshot of `org` for `[from, to)` (both in AAF's RFC 3339 form).
///
/// # Errors
///
/// The store's, as API errors.
pub async fn snapshot(
    state: &AppState,
    org: &aaf_store::Org,
    from: &str,
    to: &str,
) -> Result<EvidenceSnapshot, ApiError> {
    let samples = u32::try_from(MAX_SAMPLES).unwrap_or(5);
    let events = state
        .store
        .audit_event_stats(&org.id, from, to, samples)
        .await?
        .into_iter()
        .map(|(event_type, stats)| {
            (
                event_type,
                EventEvidence {
                    count: stats.count,
                    samples: stats.samples,
                },
            )
        })
        .collect();
    let signed = state.evidence.verifier_key().is_some();
    let checkpoints = state
        .store
        .audit_checkpoints_between(&org.id, from, to)
        .await?
        .into_iter()
        .map(|c| CheckpointRef {
            tree_size: c.tree_size,
            time: c.created_at,
            root: hex::encode(c.root_hash),
            signed: !c.note.is_empty(),
        })
        .collect();
    Ok(EvidenceSnapshot {
        org_id: org.id.clone(),
        org_name: org.name.clone(),
        from: from.to_string(),
        to: to.to_string(),
        generated_at: crate::time::now_rfc3339(),
        events,
        checkpoints,
        facts: facts(state, &org.id, signed).await?,
    })
}

/// The organisation's settings the checks read (docs/compliance.md, "The evidence snapshot").
async fn facts(state: &AppState, org_id: &str, signed: bool) -> Result<OrgFacts, ApiError> {
    let config = &state.config;
    let now = crate::time::now_rfc3339();
    let policies = crate::policies::for_org(state, org_id)
        .await
        .map_err(ApiError::Unavailable)?;
    let sources = &policies.bundle.sources;
    let approval_policy = sources.iter().any(|s| s.rego.contains("require_approval"));
    let directory_policies = sources
        .iter()
        .filter(|s| !s.path.starts_with("managed/") && !s.path.starts_with("packs/"))
        .count();
    let settings = state.store.get_org_settings(org_id).await?;
    let mut facts = OrgFacts {
        approval_policy,
        four_eyes: settings.as_ref().is_some_and(|s| s.four_eyes),
        log_key_configured: signed,
        checkpoint_sinks: u32::try_from(config.evidence.sinks.len()).unwrap_or(u32::MAX),
        encryption_at_rest: false,
        transport_encrypted: config
            .auth
            .public_base_url
            .as_deref()
            .is_some_and(|url| url.starts_with("https://")),
        alert_rules_enabled: if config.alerts.enabled {
            let all = crate::alerts::Rule::ALL.len();
            u32::try_from(all.saturating_sub(config.alerts.disabled_rules.len())).unwrap_or(0)
        } else {
            0
        },
        alert_webhooks: u32::try_from(
            state
                .store
                .list_webhooks(org_id)
                .await?
                .iter()
                .filter(|w| w.disabled_at.is_none())
                .filter(|w| w.events.iter().any(|e| e.starts_with("alert.")))
                .count(),
        )
        .unwrap_or(u32::MAX),
        risk_scoring_enabled: config.detection.risk.enabled,
        kill_switch_last_engaged: state
            .store
            .latest_audit_event_ts(org_id, aaf_core::audit::event_types::KILL_SWITCH_ENGAGED)
            .await?,
        directory_policies: u32::try_from(directory_policies).unwrap_or(u32::MAX),
        // The organisation's retention rules (docs/retention.md), per event type: a class
        // without a rule is kept for ever.
        retention: RetentionFacts {
            default_days: None,
            by_class: state
                .store
                .retention_rules(org_id)
                .await?
                .unwrap_or_default()
                .rules
                .iter()
                .flat_map(|(class, days)| {
                    class
                        .event_types()
                        .into_iter()
                        .map(move |t| (t.to_string(), Some(*days)))
                })
                .collect(),
        },
        ..OrgFacts::default()
    };
    for agent in state.store.list_agents(org_id).await? {
        let keys = state.store.list_agent_keys(org_id, &agent.id).await?;
        let active: Vec<_> = keys
            .iter()
            .filter(|k| k.revoked_at.is_none())
            .filter(|k| k.expires_at.as_deref().is_none_or(|at| at > now.as_str()))
            .collect();
        if active.is_empty() {
            continue;
        }
        if agent.public_key.is_none() {
            facts.agents_without_public_key += 1;
        }
        for key in active {
            if key.tools.is_none() {
                facts.unscoped_agent_keys += 1;
            }
            if key.expires_at.is_none() {
                facts.agent_keys_without_expiry += 1;
            }
        }
    }
    Ok(facts)
}
