//! The browser terminal's errors, worded for whoever started the server (a flag to change,
//! a session to open first) or for the person at the page.

use std::net::SocketAddr;

/// Everything that can fail in the web front end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// The address could not be bound.
    #[error("cannot serve the browser terminal on {addr}: {source}; choose another address or port (e.g. --web 127.0.0.1:0 for any free port)")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// An option is malformed (an allowed origin that is not one, ...).
    #[error("{detail}")]
    Config {
        /// What is wrong and how to write it.
        detail: String,
    },
    /// A share link was asked for a session that does not exist.
    #[error(
        "no session named {session:?} to share: open it first (the session list shows the names)"
    )]
    NoSuchSession {
        /// The name asked for.
        session: String,
    },
    /// The server stopped with an error.
    #[error("the browser terminal's server failed: {detail}")]
    Serve {
        /// What failed.
        detail: String,
    },
}

/// `Result` with [`WebError`].
pub type Result<T, E = WebError> = std::result::Result<T, E>;
