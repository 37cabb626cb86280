//! The MCP gateway's upstream servers and tool pins on PostgreSQL: [`Mutation`]s inside the
//! caller's write transaction, reads in a transaction with the organisation set (row-level
//! security). The SQL is shared with SQLite ([`crate::sql`]).

use sqlx::PgConnection;

use super::{bump_runtime_generation, conflict, OrgContext, PgStore};
use crate::model::{McpServer, McpToolPin, Mutation};
use crate::prepared::json_text;
use crate::rows::{mcp_server_from_row, mcp_tool_pin_from_row};
use crate::sqlite::mcp::{not_pending, pin_not_found, server_not_found, SERVER_EXISTS};
use crate::{sql, StoreError};

/// Applies an MCP server or tool-pin mutation inside the caller's transaction.
///
/// # Errors
///
/// [`StoreError::Conflict`] for a taken server name or a pending hash that is not the one
/// accepted; [`StoreError::NotFound`] for a server that is not live or a tool without a
/// pin; [`StoreError::Invalid`] for any other mutation; the database's errors.
pub(super) async fn apply_mutation(
    ctx: &mut OrgContext<'_, '_>,
    mutation: &Mutation,
) -> Result<(), StoreError> {
    match mutation {
        Mutation::InsertMcpServer(s) => {
            let conn = ctx.conn(&s.org_id).await?;
            sqlx::query(sql::INSERT_MCP_SERVER)
                .bind(&s.id)
                .bind(&s.org_id)
                .bind(&s.name)
                .bind(json_text(&s.transport)?)
                .bind(&s.created_at)
                .bind(&s.created_by)
                .bind(&s.updated_at)
                .execute(&mut *conn)
                .await
                .map_err(|e| conflict(e, SERVER_EXISTS))?;
            bump_runtime_generation(conn, &s.org_id, &s.created_at).await?;
        }
        Mutation::UpdateMcpServer {
            org_id,
            name,
            transport,
            now,
        } => {
            let conn = ctx.conn(org_id).await?;
            let done = sqlx::query(sql::UPDATE_MCP_SERVER)
                .bind(json_text(transport)?)
                .bind(now)
                .bind(org_id)
                .bind(name)
                .execute(&mut *conn)
                .await?;
            if done.rows_affected() == 0 {
                return Err(server_not_found(name));
            }
            bump_runtime_generation(conn, org_id, now).await?;
        }
        Mutation::DeleteMcpServer { org_id, name, now } => {
            let conn = ctx.conn(org_id).await?;
            let done = sqlx::query(sql::DELETE_MCP_SERVER)
                .bind(now)
                .bind(org_id)
                .bind(name)
                .execute(&mut *conn)
                .await?;
            if done.rows_affected() == 0 {
                return Err(server_not_found(name));
            }
            bump_runtime_generation(conn, org_id, now).await?;
        }
        Mutation::PinMcpTool(p) => {
            let conn = ctx.conn(&p.org_id).await?;
            sqlx::query(sql::PIN_MCP_TOOL)
                .bind(&p.org_id)
                .bind(&p.server)
                .bind(&p.tool)
                .bind(&p.hash)
                .bind(json_text(&p.definition)?)
                .bind(&p.pending_hash)
                .bind(p.pending_definition.as_ref().map(json_text).transpose()?)
                .bind(&p.first_seen_at)
                .bind(&p.accepted_at)
                .bind(&p.accepted_by)
                .bind(&p.changed_at)
                .execute(conn)
                .await?;
        }
        Mutation::FlagMcpToolChange {
            org_id,
            server,
            tool,
            hash,
            definition,
            now,
        } => {
            let conn = ctx.conn(org_id).await?;
            let done = sqlx::query(sql::FLAG_MCP_TOOL_CHANGE)
                .bind(hash)
                .bind(json_text(definition)?)
                .bind(now)
                .bind(org_id)
                .bind(server)
                .bind(tool)
                .execute(&mut *conn)
                .await?;
            if done.rows_affected() == 0 {
                // Unchanged, or already pending: fine; no pin: not found.
                pending_hash(conn, org_id, server, tool).await?;
            }
        }
        Mutation::AcceptMcpTool {
            org_id,
            server,
            tool,
            hash,
            by,
            now,
        } => {
            let conn = ctx.conn(org_id).await?;
            let done = sqlx::query(sql::ACCEPT_MCP_TOOL)
                .bind(now)
                .bind(by)
                .bind(org_id)
                .bind(server)
                .bind(tool)
                .bind(hash)
                .execute(&mut *conn)
                .await?;
            if done.rows_affected() == 0 {
                let pending = pending_hash(conn, org_id, server, tool).await?;
                return Err(not_pending(server, tool, hash, pending.as_deref()));
            }
        }
        _ => return Err(StoreError::Invalid("not an MCP mutation".into())),
    }
    Ok(())
}

/// The pending hash of a pinned tool (`None`: nothing pending); [`StoreError::NotFound`]
/// when the tool has no pin.
async fn pending_hash(
    conn: &mut PgConnection,
    org_id: &str,
    server: &str,
    tool: &str,
) -> Result<Option<String>, StoreError> {
    let pending: Option<Option<String>> = sqlx::query_scalar(sql::MCP_TOOL_PENDING_HASH)
        .bind(org_id)
        .bind(server)
        .bind(tool)
        .fetch_optional(conn)
        .await?;
    pending.ok_or_else(|| pin_not_found(server, tool))
}

impl PgStore {
    pub(crate) async fn list_mcp_servers(
        &self,
        org_id: &str,
    ) -> Result<Vec<McpServer>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let rows = sqlx::query(sql::LIST_MCP_SERVERS)
            .bind(org_id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(mcp_server_from_row).collect()
    }

    pub(crate) async fn get_mcp_server(
        &self,
        org_id: &str,
        name: &str,
    ) -> Result<Option<McpServer>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let row = sqlx::query(sql::GET_MCP_SERVER)
            .bind(org_id)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref().map(mcp_server_from_row).transpose()
    }

    pub(crate) async fn list_mcp_tool_pins(
        &self,
        org_id: &str,
        server: Option<&str>,
    ) -> Result<Vec<McpToolPin>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let rows = sqlx::query(sql::LIST_MCP_TOOL_PINS)
            .bind(org_id)
            .bind(server)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(mcp_tool_pin_from_row).collect()
    }

    pub(crate) async fn get_mcp_tool_pin(
        &self,
        org_id: &str,
        server: &str,
        tool: &str,
    ) -> Result<Option<McpToolPin>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let row = sqlx::query(sql::GET_MCP_TOOL_PIN)
            .bind(org_id)
            .bind(server)
            .bind(tool)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref().map(mcp_tool_pin_from_row).transpose()
    }
}
