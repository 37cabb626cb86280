//! The MCP gateway (docs/mcp.md): AAF between agents that speak the Model Context Protocol
//! and the MCP servers that hold their tools.
//!
//! - [`gateway`]: AAF as an MCP server for agents at `/mcp` (streamable HTTP, rmcp): the
//!   upstreams' tools, namespaced and filtered per agent; every `tools/call` an action
//!   through the pipeline;
//! - [`upstream`]: AAF as the MCP client of the configured servers (stdio child processes,
//!   scrubbed environment, restarted after they die).
//!
//! rmcp (the official Rust SDK) serves both sides.

pub mod gateway;
pub mod upstream;

pub use upstream::{UpstreamError, Upstreams};
