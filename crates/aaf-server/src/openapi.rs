//! The OpenAPI 3.1 document, generated from the handlers' annotations by `utoipa`.
//!
//! Besides the annotations, two modifiers derive what every endpoint shares from the code
//! that does it, so that the document cannot forget it: [`CommonAnswers`] adds, from the
//! permission table ([`crate::rbac::PERMISSIONS`]), each operation's security requirement
//! and the answers of the `authorize` middleware and the JSON extractor (401, 403, 429, 503;
//! 400, 413, 415 for operations with a body); [`ActionLinks`] adds OpenAPI links (OpenAPI
//! 3.1 section 4.8.20) from a created object to the operations that take its id, so that
//! contract tests (Schemathesis' stateful phase) follow `POST /v1/actions` to
//! `GET /v1/actions/{id}`, approve, reject, cancel and result.

use axum::http::Method;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::api;
use crate::error::{ErrorBody, ErrorDetail};
use crate::rbac::{permission_for, Caller};

/// The API description served at `GET /v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "AAF: Agent Action Firewall",
        description = "Agents submit actions; Rego policies decide (deny > require_approval > allow); allowed HTTP calls go out through an SSRF-guarded connector; every step lands in a hash-chained audit log.",
        license(name = "Apache-2.0")
    ),
    paths(
        api::healthz,
        crate::metrics::scrape,
        api::identity::whoami,
        api::identity::stats,
        api::identity::create_user,
        api::identity::list_users,
        api::identity::get_user,
        api::identity::update_user,
        api::identity::delete_user,
        api::create_agent,
        api::list_agents,
        api::identity::get_agent,
        api::identity::create_key,
        api::identity::list_keys,
        api::identity::rotate_key,
        api::identity::revoke_key,
        api::submit_action,
        api::dry_run,
        api::get_action,
        api::approvals::cancel_action,
        api::approvals::report_result,
        api::approvals::list_approvals,
        api::approvals::approve,
        api::approvals::reject,
        api::webhooks::create_webhook,
        api::webhooks::list_webhooks,
        api::webhooks::delete_webhook,
        api::webhooks::list_deliveries,
        api::runtime::engage_kill_switch,
        api::runtime::list_kill_switches,
        api::runtime::release_kill_switch,
        api::runtime::isolate_agent,
        api::runtime::list_snapshots,
        api::runtime::create_rate_limit,
        api::runtime::list_rate_limits,
        api::runtime::delete_rate_limit,
        api::mcp::protected_resource_metadata,
        api::mcp::create_server,
        api::mcp::list_servers,
        api::mcp::get_server,
        api::mcp::update_server,
        api::mcp::delete_server,
        api::mcp::list_pins,
        api::mcp::accept_tool,
        api::budgets::create_budget,
        api::budgets::list_budgets,
        api::budgets::get_budget,
        api::budgets::update_budget,
        api::budgets::delete_budget,
        api::budgets::get_circuit_breakers,
        api::budgets::set_circuit_breakers,
        api::approvals::get_settings,
        api::approvals::update_settings,
        api::policies::create_policy,
        api::policies::list_policies,
        api::policies::get_policy,
        api::policies::update_policy,
        api::policies::delete_policy,
        api::policies::list_policy_versions,
        api::policies::rollback_policy,
        api::policies::shadow_report,
        api::policies::put_data,
        api::policies::get_data,
        api::policies::list_data,
        api::policies::list_packs,
        api::policies::enable_pack,
        api::policies::disable_pack,
        api::policies::playground,
        api::policies::get_revision,
        api::list_audit,
        api::evidence::get_checkpoint,
        api::evidence::sign_checkpoint,
        api::evidence::inclusion_proof,
        api::evidence::consistency_proof,
        api::evidence::proof_pack,
        api::evidence::evidence,
        api::compliance::compliance_report,
        api::encryption::get_encryption,
        api::encryption::rotate,
        api::encryption::shred,
        api::retention::get_retention,
        api::retention::put_retention,
        api::retention::run_retention,
        api::alerts::list_alerts,
        api::alerts::get_alert,
        api::alerts::ack_alert,
        api::alerts::resolve_alert,
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        api::Health,
        api::CreateAgentBody,
        api::CreatedAgent,
        api::AgentView,
        api::AgentList,
        api::ActionBody,
        api::ActionResponse,
        api::ActionForbidden,
        api::PolicyDecisionView,
        api::AuditPage,
        api::evidence::CheckpointView,
        api::encryption::EncryptionView,
        api::encryption::DataKeyView,
        api::encryption::ShredBody,
        api::encryption::ShredView,
        api::retention::RetentionView,
        api::retention::RetentionBody,
        crate::retention::Applied,
        api::evidence::InclusionView,
        api::evidence::ConsistencyView,
        api::ActionView,
        api::ApprovalBinding,
        api::identity::CreateUserBody,
        api::identity::UpdateUserBody,
        api::identity::UserView,
        api::identity::CreatedUser,
        api::identity::UserList,
        api::identity::KeyView,
        api::identity::CreatedKey,
        api::identity::RotatedKey,
        api::identity::KeyList,
        api::identity::CreateKeyBody,
        api::identity::RotateKeyBody,
        api::identity::WhoAmI,
        api::identity::Stats,
        api::approvals::VoteView,
        api::approvals::ApprovalView,
        api::approvals::ApprovalList,
        api::approvals::AnswerBody,
        api::approvals::ResultBody,
        api::approvals::UsageBody,
        api::approvals::SettingsView,
        api::approvals::UpdateSettingsBody,
        api::webhooks::CreateWebhookBody,
        api::webhooks::WebhookView,
        api::webhooks::CreatedWebhook,
        api::webhooks::WebhookList,
        api::webhooks::DeliveryView,
        api::webhooks::DeliveryList,
        api::ActionTooMany,
        api::runtime::EngageBody,
        api::runtime::KillSwitchView,
        api::runtime::KillSwitchList,
        api::runtime::IsolateBody,
        api::runtime::IsolationView,
        api::runtime::SnapshotView,
        api::runtime::SnapshotList,
        api::runtime::RateLimitBody,
        api::runtime::RateLimitView,
        api::runtime::RateLimitList,
        api::mcp::ResourceMetadata,
        api::mcp::ServerBody,
        api::mcp::ServerPatch,
        api::mcp::ServerList,
        api::mcp::PinList,
        api::mcp::AcceptBody,
        crate::mcp::servers::ServerView,
        crate::mcp::servers::PinView,
        crate::mcp::Transport,
        api::budgets::BudgetBody,
        api::budgets::BudgetPatch,
        api::budgets::BudgetView,
        api::budgets::BudgetList,
        crate::runtime::breaker::CircuitBreakers,
        crate::error::Problem,
        crate::policies::ShadowOutcome,
        api::policies::CreatePolicyBody,
        api::policies::UpdatePolicyBody,
        api::policies::RollbackBody,
        api::policies::PolicyView,
        api::policies::PolicyList,
        api::policies::PolicyVersionView,
        api::policies::PolicyVersionList,
        api::policies::ShadowCountView,
        api::policies::ShadowSample,
        api::policies::ShadowReport,
        api::policies::DataView,
        api::policies::DataList,
        api::policies::PackView,
        api::policies::PackList,
        api::policies::PlaygroundBody,
        api::policies::PlaygroundResult,
        api::policies::RevisionView,
        api::alerts::AlertView,
        api::alerts::AlertPage,
        api::alerts::AlertAnswer,
    )),
    modifiers(&SecuritySchemes, &CommonAnswers, &ActionLinks),
    tags(
        (name = "actions", description = "Submitting agent actions for a decision"),
        (name = "approvals", description = "Human approval of actions that policies answered require_approval"),
        (name = "webhooks", description = "Notifications of approval, kill-switch and alert events"),
        (name = "runtime", description = "Runtime protection: kill switches, isolating an agent, its forensic snapshots, rate limits, budgets, circuit breakers"),
        (name = "mcp", description = "The MCP gateway's upstream servers and the pinned definitions of their tools"),
        (name = "policies", description = "Managed policies, data documents, policy packs, the playground and stored revisions"),
        (name = "agents", description = "Agent registration and agent keys"),
        (name = "users", description = "People of the organisation and their roles"),
        (name = "audit", description = "The hash-chained audit log"),
        (name = "encryption", description = "Encryption at rest: data keys, rotation and crypto-shredding"),
        (name = "retention", description = "Retention of audit payloads per event class, and legal holds"),
        (name = "alerts", description = "Alerts the built-in rules raised: listed, acknowledged, resolved"),
        (name = "operations", description = "Health, metrics and metadata"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A user's personal access token (aaf_at_...), e.g. the admin token",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "agent_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An agent API key (aaf_ak_...)"))
                    .build(),
            ),
        );
    }
}

/// Adds to every operation what the shared layers answer, from the code that answers it.
///
/// From [`crate::rbac::PERMISSIONS`]: the security requirement (`bearer` for users,
/// `agent_key` for agents, either when both may call), and for every non-public endpoint 401
/// (missing, unknown, revoked or expired credentials), 429 (too many failed authentications
/// from the address, `auth.failed_auth_per_minute`), 503 (the database could not be read)
/// and, unless every kind of caller may call it, 403. For operations with a request body,
/// the JSON extractor's 400 (not JSON, wrong shape), 413 (`limits.max_body_bytes`) and 415
/// (no `content-type: application/json`). An answer the annotations already describe is
/// kept as written.
struct CommonAnswers;

/// Every kind of caller but [`Caller::Public`].
const EVERY_CALLER: usize = 5;

impl Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, operation) in [
                (Method::GET, &mut item.get),
                (Method::POST, &mut item.post),
                (Method::PUT, &mut item.put),
                (Method::PATCH, &mut item.patch),
                (Method::DELETE, &mut item.delete),
            ] {
                let (Some(operation), Some(permission)) =
                    (operation.as_mut(), permission_for(&method, path))
                else {
                    continue;
                };
                if permission.allow.contains(&Caller::Public) {
                    continue;
                }
                let agents = permission.allow.contains(&Caller::Agent);
                let users = permission
                    .allow
                    .iter()
                    .any(|c| matches!(c, Caller::User(_)));
                let mut security = Vec::new();
                if users {
                    security.push(SecurityRequirement::new("bearer", Vec::<String>::new()));
                }
                if agents {
                    security.push(SecurityRequirement::new("agent_key", Vec::<String>::new()));
                }
                operation.security = Some(security);
                add_error(
                    operation,
                    "401",
                    "missing, unknown, revoked or expired credentials",
                );
                if permission.allow.len() < EVERY_CALLER {
                    add_error(
                        operation,
                        "403",
                        "this kind of caller or role may not call the endpoint",
                    );
                }
                add_error(
                    operation,
                    "429",
                    "too many failed authentications from this address \
                     (auth.failed_auth_per_minute); retry after `Retry-After` seconds",
                );
                add_error(
                    operation,
                    "503",
                    "the database could not be read or written",
                );
                if has_json_body(operation.request_body.as_ref()) {
                    add_error(
                        operation,
                        "400",
                        "the body is not JSON or not of the documented shape; `field` names the problem",
                    );
                    add_error(operation, "413", "body larger than limits.max_body_bytes");
                    add_error(
                        operation,
                        "415",
                        "the body is not sent as JSON (content-type: application/json)",
                    );
                }
            }
        }
    }
}

fn has_json_body(body: Option<&RequestBody>) -> bool {
    body.is_some_and(|b| b.content.contains_key("application/json"))
}

/// Adds `status` answering an [`ErrorBody`], unless the operation documents it already.
fn add_error(operation: &mut Operation, status: &str, description: &str) {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| RefOr::T(error_response(description)));
}

fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

/// OpenAPI links from the answers that create an object to the operations that take its id
/// (`$response.body#/id`): an action to reading, approving, rejecting, cancelling it and
/// reporting its result; an agent, a user, a webhook and a managed policy to their own
/// operations.
struct ActionLinks;

/// `(path of a POST operation, its statuses, [(link name, operation id)])`.
type LinkTable = [(
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
)];

const LINKS: &LinkTable = &[
    (
        "/v1/actions",
        &["200"],
        &[
            ("GetAction", "get_action"),
            ("ReportResult", "report_result"),
        ],
    ),
    (
        "/v1/actions",
        &["202"],
        &[
            ("GetAction", "get_action"),
            ("Approve", "approve"),
            ("Reject", "reject"),
            ("Cancel", "cancel_action"),
        ],
    ),
    (
        "/v1/agents",
        &["201"],
        &[
            ("GetAgent", "get_agent"),
            ("ListKeys", "list_keys"),
            ("CreateKey", "create_key"),
            ("RotateKey", "rotate_key"),
        ],
    ),
    (
        "/v1/users",
        &["201"],
        &[
            ("GetUser", "get_user"),
            ("UpdateUser", "update_user"),
            ("DeleteUser", "delete_user"),
        ],
    ),
    (
        "/v1/webhooks",
        &["201"],
        &[
            ("ListDeliveries", "list_deliveries"),
            ("DeleteWebhook", "delete_webhook"),
        ],
    ),
    (
        "/v1/policies",
        &["201"],
        &[
            ("GetPolicy", "get_policy"),
            ("ListVersions", "list_policy_versions"),
            ("ShadowReport", "shadow_report"),
            ("UpdatePolicy", "update_policy"),
            ("DeletePolicy", "delete_policy"),
        ],
    ),
];

impl Modify for ActionLinks {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, statuses, links) in LINKS {
            let Some(operation) = openapi
                .paths
                .paths
                .get_mut(*path)
                .and_then(|item| item.post.as_mut())
            else {
                continue;
            };
            for status in *statuses {
                let Some(RefOr::T(response)) = operation.responses.responses.get_mut(*status)
                else {
                    continue;
                };
                for (name, operation_id) in *links {
                    response.links.insert(
                        (*name).to_owned(),
                        RefOr::T(
                            // utoipa 5.5 serialises `Link::operation_id` as `operation_id`,
                            // not `operationId` as OpenAPI 3.1 names it (section 4.8.20.1);
                            // the flattened map writes the field under its standard name.
                            LinkBuilder::new()
                                .extensions(Some(Extensions::from_iter([(
                                    "operationId",
                                    *operation_id,
                                )])))
                                .parameter("id", "$response.body#/id")
                                .description(format!("`{operation_id}` with this answer's `id`"))
                                .build(),
                        ),
                    );
                }
            }
        }
    }
}

/// The document as pretty JSON (for `aaf openapi` and tests).
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}
