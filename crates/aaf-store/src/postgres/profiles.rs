//! Agents' behavioural profiles on PostgreSQL: [`Mutation::PutAgentProfile`] inside the
//! caller's write transaction, reads in a transaction with the organisation set (row-level
//! security). The SQL is shared with SQLite ([`crate::sql`]) but for the compare-and-set.

use super::{OrgContext, PgStore};
use crate::model::{ActionRecord, AgentProfileRecord, Mutation};
use crate::prepared::json_text;
use crate::rows::{action_from_row, agent_profile_from_row};
use crate::sqlite::profiles::split;
use crate::{sql, StoreError};

/// Applies a profile mutation inside the caller's transaction: one statement, which writes
/// nothing (and is no error) when the stored watermark is not the expected one. Under
/// concurrent writes of one profile, the row's lock orders them and each compares with the
/// watermark the one before it committed (`ON CONFLICT DO UPDATE ... WHERE` re-reads the
/// latest row version even in READ COMMITTED).
///
/// # Errors
///
/// [`StoreError::Invalid`] for any other mutation or a profile that cannot be written as
/// JSON; the database's errors (an unknown organisation).
pub(super) async fn apply_mutation(
    ctx: &mut OrgContext<'_, '_>,
    mutation: &Mutation,
) -> Result<(), StoreError> {
    let Mutation::PutAgentProfile { record, expected } = mutation else {
        return Err(StoreError::Invalid("not an agent profile mutation".into()));
    };
    let (folded_at, folded_id) = split(record.folded_until.as_ref());
    let (expected_at, expected_id) = split(expected.as_ref());
    sqlx::query(sql::PUT_AGENT_PROFILE_PG)
        .bind(&record.org_id)
        .bind(&record.agent_id)
        .bind(json_text(&record.profile)?)
        .bind(folded_at)
        .bind(folded_id)
        .bind(&record.updated_at)
        .bind(expected_at)
        .bind(expected_id)
        .execute(ctx.conn(&record.org_id).await?)
        .await?;
    Ok(())
}

impl PgStore {
    pub(crate) async fn get_agent_profile(
        &self,
        org_id: &str,
        agent_id: &str,
    ) -> Result<Option<AgentProfileRecord>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let row = sqlx::query(sql::GET_AGENT_PROFILE)
            .bind(org_id)
            .bind(agent_id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
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
        let mut tx = self.begin_org(org_id).await?;
        let rows = query.bind(i64::from(limit)).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| action_from_row(r, &self.keys))
            .collect()
    }
}
