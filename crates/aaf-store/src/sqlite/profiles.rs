//! Agents' behavioural profiles on SQLite: [`Mutation::PutAgentProfile`] inside the caller's
//! write transaction, reads of profiles and of an agent's actions in order on the reader
//! pool. The SQL is shared with PostgreSQL ([`crate::sql`]) but for the compare-and-set.

use rusqlite::{params, Connection};

use super::SqliteStore;
use crate::model::{ActionRecord, AgentProfileRecord, Mutation};
use crate::prepared::json_text;
use crate::rows::{action_from_row, agent_profile_from_row};
use crate::{sql, StoreError};

/// Applies a profile mutation inside the caller's transaction: one statement, which writes
/// nothing (and is no error) when the stored watermark is not the expected one.
///
/// # Errors
///
/// [`StoreError::Invalid`] for any other mutation or a profile that cannot be written as
/// JSON; the database's errors (an unknown organisation).
pub(super) fn apply_mutation(conn: &Connection, mutation: &Mutation) -> Result<(), StoreError> {
    let Mutation::PutAgentProfile { record, expected } = mutation else {
        return Err(StoreError::Invalid("not an agent profile mutation".into()));
    };
    let (folded_at, folded_id) = split(record.folded_until.as_ref());
    let (expected_at, expected_id) = split(expected.as_ref());
    conn.prepare_cached(sql::PUT_AGENT_PROFILE_SQLITE)?
        .execute(params![
            record.org_id,
            record.agent_id,
            json_text(&record.profile)?,
            folded_at,
            folded_id,
            record.updated_at,
            expected_at,
            expected_id
        ])?;
    Ok(())
}

/// A watermark as its two columns (both NULL for none).
pub(crate) fn split(watermark: Option<&(String, String)>) -> (Option<&str>, Option<&str>) {
    match watermark {
        Some((at, id)) => (Some(at.as_str()), Some(id.as_str())),
        None => (None, None),
    }
}

impl SqliteStore {
    pub(crate) async fn get_agent_profile(
        &self,
        org_id: &str,
        agent_id: &str,
    ) -> Result<Option<AgentProfileRecord>, StoreError> {
        let row = sqlx::query(sql::GET_AGENT_PROFILE)
            .bind(org_id)
            .bind(agent_id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(agent_profile_from_row).transpose()
    }

    pub(crate) async fn agent_actions_after(
        &self,
        org_id: &str,
        agent_id: &str,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        let query = match after {
            Some((created_at, id)) => sqlx::query(sql::AGENT_ACTIONS_AFTER)
                .bind(org_id)
                .bind(agent_id)
                .bind(created_at)
                .bind(id),
            None => sqlx::query(sql::AGENT_ACTIONS_FIRST)
                .bind(org_id)
                .bind(agent_id),
        };
        let rows = query.bind(i64::from(limit)).fetch_all(&self.reader).await?;
        rows.iter()
            .map(|r| action_from_row(r, &self.keys))
            .collect()
    }
}
