//! Persistent, stateful SSH sessions for programs and AI agents.
//!
//! A session is a named shell on a remote host that keeps its working directory,
//! environment, functions, aliases and background jobs between commands, and reports every
//! command's exact output and exit code. Completion is detected with an unguessable marker,
//! never by matching prompts or sleeping, so a command takes one round trip (≈0.3 ms on
//! loopback) instead of a new SSH channel or process per command.
//!
//! ```no_run
//! use std::time::Duration;
//! use ssh_session_core::{
//!     ConnectOptions, ExecOptions, IdentityFile, Interrupt, ReadOptions, Session,
//!     SessionConfig, SessionManager,
//! };
//!
//! # async fn demo() -> Result<(), ssh_session_core::Error> {
//! let manager = SessionManager::new();
//! let options = ConnectOptions::new("build.example.com", "deploy")
//!     .identity(IdentityFile::new("/home/me/.ssh/id_ed25519"));
//! let web = manager.open("web", options, SessionConfig::default()).await?;
//!
//! web.exec("cd /srv/app && export RUST_LOG=debug", ExecOptions::default()).await?;
//! let r = web.exec("pwd; echo $RUST_LOG", ExecOptions::default()).await?;
//! assert_eq!(r.text(), "/srv/app\ndebug\n");
//! assert_eq!(r.exit_code, Some(0));
//!
//! // A long command returns after its timeout and keeps running...
//! let r = web.exec("make -j8", ExecOptions::timeout(Duration::from_secs(5))).await?;
//! if r.is_running() {
//!     // ...follow it, or stop it with Ctrl-C.
//!     let more = web
//!         .read_output(ReadOptions { wait: Duration::from_secs(60), ..Default::default() })
//!         .await?;
//!     if more.is_running() {
//!         web.interrupt(Interrupt::Int).await?;
//!     }
//! }
//! manager.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! The layers, bottom up:
//! - [`transport`]: the pluggable [`Transport`] trait (one SSH connection that opens
//!   channels) and its backends: native [`russh`](transport::russh) and the local OpenSSH
//!   client ([`openssh`](transport::openssh)).
//! - [`config`]: `~/.ssh/config` resolution (`ssh -G` as the authority) and host aliases.
//! - [`persistent`]: shells that live in remote tmux and survive dropped links.
//! - [`protocol`]: the marker/exec protocol spoken with the remote shell, pure and tested.
//! - [`session`]: [`Session`] and its implementation [`ShellSession`] over any transport.
//! - [`SessionManager`]: named sessions shared safely between tasks, on pooled connections
//!   that reconnect by themselves.
#![warn(missing_docs)]

pub mod config;
pub mod error;
mod manager;
pub mod options;
mod persistent;
mod protocol;
pub mod session;
pub mod transport;

pub use config::{
    list_host_aliases, resolve_host, Agent, ConfigResolver, HostAlias, HostSpec, ResolvedBy,
    ResolvedHost,
};
pub use error::{Error, ErrorKind, Result};
pub use manager::{validate_name, ConnectionInfo, SessionManager};
pub use options::{
    local_user, ConnectOptions, HostKeyPolicy, IdentityFile, JumpHost, PasswordCallback,
};
pub use session::{
    CommandState, Endpoint, ExecOptions, ExecResult, ExecStream, Follow, FollowEvent, HistoryEntry,
    Interrupt, Notice, ReadOptions, ReconnectPolicy, Session, SessionConfig, SessionInfo,
    SessionStatus, ShellSession, StatusEvent, StopReport, StreamEvent,
};
pub use transport::{Transport, TransportKind};
