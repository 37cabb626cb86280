//! Stage 0 of the pipeline: the guards of runtime protection, asked before anything else.
//! A refusal is a deny that no policy made: the action is recorded (stage 4) with the
//! guard's reason and goes no further; no policy is evaluated and no connector is asked.
//!
//! Every refusal's reason starts with the guard's name and a colon (`kill_switch:`; to come:
//! `rate_limit:`, `budget:`), ARCHITECTURE.md.

use aaf_core::action::Decision;

use crate::app::AppState;
use crate::runtime::Refusal;

/// The guard that refused an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// A kill switch in force stops the action (or the node cannot confirm which do).
    KillSwitch,
}

impl Guard {
    /// The guard's name, as recorded (`kill_switch`).
    pub fn as_str(self) -> &'static str {
        match self {
            Guard::KillSwitch => "kill_switch",
        }
    }
}

/// A guard's refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Which guard.
    pub guard: Guard,
    /// Why, starting with the guard's name and a colon.
    pub reason: String,
    /// The kill switch that stopped the action, if one did.
    pub kill_switch_id: Option<String>,
}

impl Refused {
    /// The deny to record.
    pub fn decision(&self) -> Decision {
        Decision::fail_closed(self.reason.clone())
    }

    /// What the `action.decided` event records of the refusal.
    pub fn audit_data(&self) -> serde_json::Value {
        serde_json::json!({
            "guard": self.guard.as_str(),
            "kill_switch_id": self.kill_switch_id,
        })
    }
}

impl From<Refusal> for Refused {
    fn from(r: Refusal) -> Refused {
        Refused {
            guard: Guard::KillSwitch,
            kill_switch_id: r.kill_switch_id().map(str::to_string),
            reason: r.reason().to_string(),
        }
    }
}

/// Runs the guards for an action of `agent_id` on `tool` in `org_id`.
///
/// # Errors
///
/// [`Refused`] when a guard refuses it.
pub fn check(state: &AppState, org_id: &str, agent_id: &str, tool: &str) -> Result<(), Refused> {
    state
        .kill_switches
        .check(org_id, agent_id, tool, || state.clock.now_rfc3339())
        .map_err(Refused::from)
}
