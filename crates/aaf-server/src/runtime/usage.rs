//! `input.usage`: an agent's recent activity as policies see it (docs/policies.md, "Input";
//! docs/runtime-protection.md, "Usage"). Built per action, and only for a policy set that
//! refers to it ([`aaf_core::policy::PolicySet::runtime_inputs`]): it costs one indexed read
//! of the agent's actions in the last hour, and an input that changes with every action is
//! never served from the decision cache.

use aaf_store::Store;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

/// Reads the agent's counts before this action (which is not recorded yet) and returns
/// `{"actions_last_minute": n, "actions_last_hour": n, "denials_last_5_minutes": n,
/// "tools": {"<tool>": {"last_minute": n, "last_hour": n}}, "rate_limit_exceeded": bool}`.
/// `rate_limit_exceeded` is true when a rate limit in `policy` mode that counts the agent's
/// actions is over for this action.
///
/// # Errors
///
/// The store's error, as text (the caller denies: a policy that asks cannot be answered).
pub async fn input_view(
    store: &Store,
    org_id: &str,
    agent_id: &str,
    now: OffsetDateTime,
    rate_limit_exceeded: bool,
) -> Result<Value, String> {
    let ago = |seconds: i64| crate::time::format_rfc3339(now - time::Duration::seconds(seconds));
    let (minute, five, hour) = (ago(60), ago(300), ago(3600));
    let usage = store
        .agent_usage(org_id, agent_id, [&minute, &five, &hour])
        .await
        .map_err(|e| format!("the agent's usage (input.usage) could not be read: {e}"))?;
    let tools: Map<String, Value> = usage
        .tools
        .iter()
        .map(|(tool, (m, h))| (tool.clone(), json!({"last_minute": m, "last_hour": h})))
        .collect();
    Ok(json!({
        "actions_last_minute": usage.actions_last_minute,
        "actions_last_hour": usage.actions_last_hour,
        "denials_last_5_minutes": usage.denials_last_5_minutes,
        "tools": tools,
        "rate_limit_exceeded": rate_limit_exceeded,
    }))
}
