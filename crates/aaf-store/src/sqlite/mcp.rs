//! The MCP gateway's upstream servers and tool pins on SQLite: [`Mutation`]s inside the
//! caller's write transaction, reads on the reader pool. The SQL is shared with PostgreSQL
//! ([`crate::sql`]).

use rusqlite::{params, Connection, OptionalExtension};

use super::{budgets::bump, named_conflict, SqliteStore};
use crate::model::{McpServer, McpToolPin, Mutation};
use crate::prepared::json_text;
use crate::rows::{mcp_server_from_row, mcp_tool_pin_from_row};
use crate::{sql, StoreError};

/// The conflict of a second live server of one name.
pub(crate) const SERVER_EXISTS: &str = "the organisation has an MCP server with this name already";

/// Applies an MCP server or tool-pin mutation inside the caller's transaction.
///
/// # Errors
///
/// [`StoreError::Conflict`] for a taken server name or a pending hash that is not the one
/// accepted; [`StoreError::NotFound`] for a server that is not live or a tool without a
/// pin; [`StoreError::Invalid`] for any other mutation; the database's errors.
pub(super) fn apply_mutation(conn: &Connection, mutation: &Mutation) -> Result<(), StoreError> {
    match mutation {
        Mutation::InsertMcpServer(s) => {
            conn.prepare_cached(sql::INSERT_MCP_SERVER)?
                .execute(params![
                    s.id,
                    s.org_id,
                    s.name,
                    json_text(&s.transport)?,
                    s.created_at,
                    s.created_by,
                    s.updated_at
                ])
                .map_err(|e| named_conflict(e, SERVER_EXISTS))?;
            bump(conn, &s.org_id, &s.created_at)?;
        }
        Mutation::UpdateMcpServer {
            org_id,
            name,
            transport,
            now,
        } => {
            let done = conn
                .prepare_cached(sql::UPDATE_MCP_SERVER)?
                .execute(params![json_text(transport)?, now, org_id, name])?;
            if done == 0 {
                return Err(server_not_found(name));
            }
            bump(conn, org_id, now)?;
        }
        Mutation::DeleteMcpServer { org_id, name, now } => {
            let done = conn
                .prepare_cached(sql::DELETE_MCP_SERVER)?
                .execute(params![now, org_id, name])?;
            if done == 0 {
                return Err(server_not_found(name));
            }
            bump(conn, org_id, now)?;
        }
        Mutation::PinMcpTool(p) => {
            conn.prepare_cached(sql::PIN_MCP_TOOL)?.execute(params![
                p.org_id,
                p.server,
                p.tool,
                p.hash,
                json_text(&p.definition)?,
                p.pending_hash,
                p.pending_definition.as_ref().map(json_text).transpose()?,
                p.first_seen_at,
                p.accepted_at,
                p.accepted_by,
                p.changed_at
            ])?;
        }
        Mutation::FlagMcpToolChange {
            org_id,
            server,
            tool,
            hash,
            definition,
            now,
        } => {
            let done = conn
                .prepare_cached(sql::FLAG_MCP_TOOL_CHANGE)?
                .execute(params![
                    hash,
                    json_text(definition)?,
                    now,
                    org_id,
                    server,
                    tool
                ])?;
            if done == 0 {
                // Unchanged, or already pending: fine; no pin: not found.
                pending_hash(conn, org_id, server, tool)?;
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
            let done = conn
                .prepare_cached(sql::ACCEPT_MCP_TOOL)?
                .execute(params![now, by, org_id, server, tool, hash])?;
            if done == 0 {
                let pending = pending_hash(conn, org_id, server, tool)?;
                return Err(not_pending(server, tool, hash, pending.as_deref()));
            }
        }
        _ => return Err(StoreError::Invalid("not an MCP mutation".into())),
    }
    Ok(())
}

/// The pending hash of a pinned tool (`None`: nothing pending); [`StoreError::NotFound`]
/// when the tool has no pin.
fn pending_hash(
    conn: &Connection,
    org_id: &str,
    server: &str,
    tool: &str,
) -> Result<Option<String>, StoreError> {
    conn.prepare_cached(sql::MCP_TOOL_PENDING_HASH)?
        .query_row(params![org_id, server, tool], |row| row.get(0))
        .optional()?
        .ok_or_else(|| pin_not_found(server, tool))
}

/// No live server of this name.
pub(crate) fn server_not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!("MCP server {name}"))
}

/// No pin of this tool.
pub(crate) fn pin_not_found(server: &str, tool: &str) -> StoreError {
    StoreError::NotFound(format!("pinned tool {tool} of MCP server {server}"))
}

/// The refusal of an acceptance whose hash is not the pending one.
pub(crate) fn not_pending(
    server: &str,
    tool: &str,
    hash: &str,
    pending: Option<&str>,
) -> StoreError {
    let now = match pending {
        Some(p) => format!("the pending version is {p}"),
        None => "no version is pending".to_string(),
    };
    StoreError::Conflict(format!(
        "the pending version of tool {tool} of MCP server {server} is not {hash} ({now})"
    ))
}

impl SqliteStore {
    pub(crate) async fn list_mcp_servers(
        &self,
        org_id: &str,
    ) -> Result<Vec<McpServer>, StoreError> {
        let rows = sqlx::query(sql::LIST_MCP_SERVERS)
            .bind(org_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(mcp_server_from_row).collect()
    }

    pub(crate) async fn get_mcp_server(
        &self,
        org_id: &str,
        name: &str,
    ) -> Result<Option<McpServer>, StoreError> {
        let row = sqlx::query(sql::GET_MCP_SERVER)
            .bind(org_id)
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(mcp_server_from_row).transpose()
    }

    pub(crate) async fn list_mcp_tool_pins(
        &self,
        org_id: &str,
        server: Option<&str>,
    ) -> Result<Vec<McpToolPin>, StoreError> {
        let rows = sqlx::query(sql::LIST_MCP_TOOL_PINS)
            .bind(org_id)
            .bind(server)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(mcp_tool_pin_from_row).collect()
    }

    pub(crate) async fn get_mcp_tool_pin(
        &self,
        org_id: &str,
        server: &str,
        tool: &str,
    ) -> Result<Option<McpToolPin>, StoreError> {
        let row = sqlx::query(sql::GET_MCP_TOOL_PIN)
            .bind(org_id)
            .bind(server)
            .bind(tool)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(mcp_tool_pin_from_row).transpose()
    }
}
