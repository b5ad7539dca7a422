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
//! The public API, layer by layer, bottom up:
//! - [`transport`]: the [`Transport`] trait — one authenticated connection that opens
//!   [`Channel`](transport::Channel)s ([`ChannelInput`](transport::ChannelInput),
//!   [`EventSource`](transport::EventSource), [`ChannelEvent`](transport::ChannelEvent),
//!   [`PtyRequest`](transport::PtyRequest), [`ShellRequest`](transport::ShellRequest),
//!   [`TunnelStream`](transport::TunnelStream), [`run`](transport::run) →
//!   [`RunOutput`](transport::RunOutput)) — and its two backends,
//!   [`RusshTransport`](transport::russh::RusshTransport) (native, in-process) and
//!   [`OpenSshTransport`](transport::openssh::OpenSshTransport) (the local `ssh` through a
//!   ControlMaster); [`TransportKind`] names one. Implement `Transport` to add a backend.
//! - [`options`]: [`ConnectOptions`] (a builder method per field), [`IdentityFile`],
//!   [`HostKeyPolicy`], [`JumpHost`], [`PasswordCallback`], [`local_user`].
//! - [`config`]: `~/.ssh/config` the way `ssh` reads it (`ssh -G` as the authority):
//!   [`HostSpec`] (a host as a person names it, plus a front end's overrides and whose
//!   [`Agent`]) → `ConnectOptions`; [`resolve_host`] → [`ResolvedHost`] ([`ResolvedBy`]),
//!   [`list_host_aliases`] → [`HostAlias`], [`ConfigResolver`].
//! - [`session`]: the [`Session`] trait (the other extension point) and its implementation
//!   [`ShellSession`], configured by [`SessionConfig`] ([`ReconnectPolicy`]; `persistent`
//!   runs the shell in remote tmux so it survives lost links and restarts):
//!   [`exec`](Session::exec) ([`ExecOptions`]) → [`ExecResult`] ([`CommandState`],
//!   [`Notice`]); [`exec_stream`](Session::exec_stream) → [`ExecStream`] of
//!   [`StreamEvent`]s; [`follow`](ShellSession::follow) → [`Follow`] of [`FollowEvent`]s;
//!   [`read_output`](Session::read_output) ([`ReadOptions`]);
//!   [`interrupt`](Session::interrupt) ([`Interrupt`]); [`stop_command`](Session::stop_command)
//!   → [`StopReport`]; [`history`](Session::history) → [`HistoryEntry`];
//!   [`info`](Session::info) → [`SessionInfo`] ([`Endpoint`], [`SessionStatus`]) and
//!   [`subscribe_status`](Session::subscribe_status) → [`StatusEvent`]s.
//! - [`SessionManager`]: named sessions shared safely between tasks ([`validate_name`]),
//!   on pooled connections ([`ConnectionInfo`]) that reconnect by themselves;
//!   [`exec_many`](SessionManager::exec_many) → [`ManyResult`]s runs one command on many
//!   at once.
//! - [`files`]: a session's files over SFTP on either transport
//!   ([`ShellSession::files`] → [`RemoteFiles`](files::RemoteFiles)): ranged reads with
//!   the file's hash, atomic hash-guarded writes, listings, uploads and downloads.
//! - [`tunnel`]: port forwarding on a session (`-L`, `-D`, `-R`) that survives reconnects
//!   ([`SessionManager::open_tunnel`]); [`ShellSession::host_info`] → [`HostInfo`].
//! - [`error`]: [`Error`], whose [`kind`](Error::kind) is an [`ErrorKind`] for front ends to
//!   map to their own codes; [`Result`].
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod files;
mod manager;
pub mod options;
mod persistent;
mod protocol;
pub mod session;
pub mod transport;
pub mod tunnel;

pub use config::{
    list_host_aliases, resolve_host, Agent, ConfigResolver, HostAlias, HostSpec, ResolvedBy,
    ResolvedHost,
};
pub use error::{Error, ErrorKind, FileProblem, Result};
pub use manager::{validate_name, ConnectionInfo, ManyResult, SessionManager};
pub use options::{
    local_user, ConnectOptions, HostKeyPolicy, IdentityFile, JumpHost, PasswordCallback,
};
pub use session::{
    AttachOptions, Attachment, CommandState, Disk, Endpoint, ExecOptions, ExecResult, ExecStream,
    Follow, FollowEvent, HistoryEntry, HostInfo, HumanActivity, HumanCommand, Interrupt, Notice,
    ReadOptions, ReconnectPolicy, SecretKind, SecretPrompt, Session, SessionConfig, SessionInfo,
    SessionStatus, ShellSession, StatusEvent, StopReport, StreamEvent, TerminalEvent,
};
pub use transport::{Transport, TransportKind};

// The handles programs share between tasks and threads, checked at compile time: a field
// that stopped being Send or Sync would break every caller that spawns with them.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<SessionManager>();
    send_sync::<ShellSession>();
    send_sync::<Follow>();
    send_sync::<ExecStream>();
    send_sync::<ExecResult>();
    send_sync::<ConnectOptions>();
    send_sync::<HostSpec>();
    send_sync::<Error>();
    send_sync::<transport::russh::RusshTransport>();
    send_sync::<transport::openssh::OpenSshTransport>();
};
