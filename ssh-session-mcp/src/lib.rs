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
//! - [`stdio`]: the default transport; [`http`]: streamable HTTP with a bearer token.
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod http;
pub mod policy;
pub mod render;
pub mod stdio;
pub mod tools;

pub use config::Config;
pub use error::{McpError, Result};
pub use stdio::serve_stdio;
pub use tools::SshSessionServer;
