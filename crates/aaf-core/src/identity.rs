//! Who may do what: the four human roles of the organisation (seed 003's RBAC) and the kinds
//! of callers of the API.
//!
//! The permission of each endpoint is a table in the server (`aaf_server::rbac`); this module
//! only names the roles so that every layer spells them the same way.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A person's role in an organisation.
///
/// - `admin`: everything in the organisation, including users and agents.
/// - `approver`: approve or reject actions, read actions and the audit log.
/// - `auditor`: read-only access to actions and the audit log.
/// - `viewer`: the dashboard and basic statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Organisation administrator.
    Admin,
    /// May approve or reject actions.
    Approver,
    /// Read-only audit access.
    Auditor,
    /// Dashboard and basic statistics.
    Viewer,
}

impl Role {
    /// Every role, most privileged first.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Approver, Role::Auditor, Role::Viewer];

    /// The role's wire and storage name: `admin`, `approver`, `auditor` or `viewer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown role name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected admin, approver, auditor or viewer")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    /// Parses an exact (lowercase) role name.
    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(
                serde_json::to_string(&role).ok(),
                Some(format!("\"{role}\""))
            );
        }
        assert!("Admin".parse::<Role>().is_err());
        assert!("root".parse::<Role>().is_err());
    }
}
