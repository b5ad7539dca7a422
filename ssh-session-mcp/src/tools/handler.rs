//! The MCP server handler: tools from the router, and what the server tells a client
//! about itself. Kept apart from the tools because `#[tool_handler]` expands code that
//! names `McpError` and `Result` as rmcp's own.

use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::{tool_handler, ServerHandler};

use super::SshSessionServer;

#[tool_handler(router = self.tool_router)]
impl ServerHandler for SshSessionServer {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions(
                "Persistent SSH shells: ssh_connect once, then ssh_exec many times (cwd, env, \
                 jobs persist). Long commands return running: true; follow with \
                 ssh_read_output, answer prompts with ssh_send_input, stop with ssh_interrupt.",
            );
        info.server_info = Implementation::new("ssh-session-mcp", env!("CARGO_PKG_VERSION"));
        info
    }
}
