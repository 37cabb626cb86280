//! The OpenAPI 3.1 document, generated from the handlers' annotations by `utoipa`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;
use crate::error::{ErrorBody, ErrorDetail};

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
        api::PolicyDecisionView,
        api::AuditPage,
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
        api::approvals::SettingsView,
        api::approvals::UpdateSettingsBody,
        api::webhooks::CreateWebhookBody,
        api::webhooks::WebhookView,
        api::webhooks::CreatedWebhook,
        api::webhooks::WebhookList,
        api::webhooks::DeliveryView,
        api::webhooks::DeliveryList,
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
    )),
    modifiers(&SecuritySchemes),
    tags(
        (name = "actions", description = "Submitting agent actions for a decision"),
        (name = "approvals", description = "Human approval of actions that policies answered require_approval"),
        (name = "webhooks", description = "Notifications of approval events"),
        (name = "policies", description = "Managed policies, data documents, policy packs, the playground and stored revisions"),
        (name = "agents", description = "Agent registration and agent keys"),
        (name = "users", description = "People of the organisation and their roles"),
        (name = "audit", description = "The hash-chained audit log"),
        (name = "operations", description = "Health and metadata"),
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

/// The document as pretty JSON (for `aaf openapi` and tests).
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}
