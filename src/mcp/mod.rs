//! MCP: tools from Model Context Protocol servers, through the official Rust SDK (`rmcp`).
//!
//! - [`manager`]: runs the configured servers, restarts failed ones, follows config edits,
//!   and keeps their tools in the agent's live tool set.
//! - [`connection`]: one stdio or streamable-HTTP connection (process group, stderr to the
//!   log, stray stdout noticed).
//! - [`tool`]: a server's tool as a Pryx tool (risk from annotations, progress, time-out,
//!   `notifications/cancelled`).
//! - [`names`]: `SERVER__TOOL` names every provider accepts, without duplicates.
//! - [`content`]: results (text, images, resources, structured content) as model text.
//! - [`config_file`]: `mcp.add`/`remove`/`import` as edits of the config file.
//!
//! Policy: an MCP tool runs without asking only if the user trusts it (`trusted`,
//! `trusted_tools`, `[policy.tools]`) or it declares `readOnlyHint: true`; `[policy.tools]`
//! deny rules always win. Descriptions and instructions from a server never loosen anything.

pub mod config_file;
pub mod connection;
pub mod content;
pub mod manager;
pub mod names;
pub mod oauth;
pub mod tool;

pub use manager::{McpEnvironment, McpError, McpManager};
