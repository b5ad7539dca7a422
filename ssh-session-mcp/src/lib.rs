//! An MCP server that gives AI agents persistent, exact SSH sessions: a thin
//! [`rmcp`] layer over one shared [`ssh_session_core::SessionManager`].
//!
//! ```no_run
//! use ssh_session_mcp::{serve_stdio, Config, SshSessionServer};
//!
//! # async fn demo() -> Result<(), ssh_session_mcp::McpError> {
//! let server = SshSessionServer::new(ssh_session_core::SessionManager::new(), Config::default())?;
//! serve_stdio(server).await?;
//! # Ok(())
//! # }
//! ```
//!
//! - [`tools`]: the tool contract (names and fields are a stable interface).
//! - [`render`]: output made fit for a language model (escapes stripped, capped).
//! - [`config`] and [`policy`]: the TOML configuration and its guard-rails.
//! - [`http`]: streamable HTTP with a bearer token, next to the default stdio.
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod http;
pub mod policy;
pub mod render;
pub mod tools;

pub use config::Config;
pub use error::{McpError, Result};
pub use tools::SshSessionServer;

use rmcp::ServiceExt;

/// Serves `server` over stdin/stdout until the client disconnects, then closes every
/// session (persistent ones keep their remote tmux session).
pub async fn serve_stdio(server: SshSessionServer) -> Result<()> {
    let manager = server.manager().clone();
    let running =
        server
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| McpError::Transport {
                detail: e.to_string(),
            })?;
    let outcome = running.waiting().await;
    manager.shutdown_detaching_persistent().await;
    outcome.map(|_| ()).map_err(|e| McpError::Transport {
        detail: e.to_string(),
    })
}
