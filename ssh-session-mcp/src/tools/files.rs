//! The file tools: remote reads, guarded writes and listings over the session's SFTP
//! channel, and uploads and downloads confined to the client's roots.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::{ProgressNotificationParam, ProgressToken, RequestMetaObject};
use rmcp::{tool, tool_router, Peer, RoleServer};
use ssh_session_core::files::{FileRange, Progress, RemoteFiles, Transfer, WriteOptions};

use super::params::{DownloadArgs, ListDirArgs, ReadFileArgs, UploadArgs, WriteFileArgs};
use super::results::{
    timestamp, DirEntryItem, ListDirResult, ReadFileResult, TransferResult, WriteFileResult,
};
use super::SshSessionServer;
use crate::error::McpError;
use crate::Result;

/// The most one `ssh_read_file` returns, whatever `limit` asks: page with `offset` beyond.
const MAX_READ_BYTES: u64 = 8 << 20;

/// `0644`.
fn octal(mode: u32) -> String {
    format!("{mode:04o}")
}

fn parse_mode(mode: Option<&str>) -> Result<Option<u32>> {
    mode.map(|m| {
        u32::from_str_radix(m.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| McpError::InvalidArgument {
                name: "mode",
                detail: format!(
                    "{m:?} is not a file mode; give octal digits such as \"644\" or \"0755\""
                ),
            })
    })
    .transpose()
}

/// The client's MCP roots as local directories. Roots are deprecated by a later revision
/// of the protocol (SEP-2577), but the clients in use still declare them and they are how
/// a client says which of its directories a server may touch; `local_dirs` in the config
/// is the way that outlives them.
#[allow(deprecated)]
async fn client_roots(peer: &Peer<RoleServer>) -> Vec<PathBuf> {
    let declared = peer
        .peer_info()
        .is_some_and(|info| info.capabilities.roots.is_some());
    if !declared {
        return Vec::new();
    }
    match peer.list_roots().await {
        Ok(list) => list
            .roots
            .iter()
            .filter_map(|r| r.uri.strip_prefix("file://"))
            .map(|p| {
                PathBuf::from(
                    percent_encoding::percent_decode_str(p)
                        .decode_utf8_lossy()
                        .into_owned(),
                )
            })
            .collect(),
        Err(e) => {
            tracing::warn!("the client declared roots but listing them failed: {e}");
            Vec::new()
        }
    }
}

impl SshSessionServer {
    async fn files_of(&self, session: &str) -> Result<RemoteFiles> {
        Ok(self.session(session)?.files().await?)
    }

    /// Refuses file changes on a read-only host.
    pub(super) fn check_change(&self, session: &str, what: &str) -> Result<()> {
        let session = self.session(session)?;
        self.rules_of(&session)?
            .check_change(what)
            .map_err(|detail| McpError::Policy { detail })
    }

    /// `path` made absolute and checked to lie under one of the directories this client
    /// may use: its MCP roots, or the configured `local_dirs`. For a path that does not
    /// exist yet (a download's target), its parent must.
    async fn local_path(&self, peer: &Peer<RoleServer>, path: &str) -> Result<PathBuf> {
        let refuse = |detail: String| McpError::InvalidArgument {
            name: "local_path",
            detail,
        };
        let given = Path::new(path);
        if !given.is_absolute() {
            return Err(refuse(format!(
                "{path:?} is relative; give an absolute path"
            )));
        }
        let resolved = match std::fs::canonicalize(given) {
            Ok(p) => p,
            Err(_) => {
                let (Some(parent), Some(name)) = (given.parent(), given.file_name()) else {
                    return Err(refuse(format!("{path:?} has no parent directory")));
                };
                std::fs::canonicalize(parent)
                    .map_err(|e| refuse(format!("{}: {e}", parent.display())))?
                    .join(name)
            }
        };
        let mut allowed: Vec<PathBuf> = self
            .config
            .local_dirs
            .iter()
            .map(|d| crate::config::expand_home(d))
            .collect();
        allowed.extend(client_roots(peer).await);
        let inside = allowed
            .iter()
            .any(|dir| std::fs::canonicalize(dir).is_ok_and(|dir| resolved.starts_with(dir)));
        if inside {
            return Ok(resolved);
        }
        Err(if allowed.is_empty() {
            refuse(
                "no local directory is open to file transfers: the client declared no MCP roots and the server's config sets no local_dirs".into(),
            )
        } else {
            refuse(format!(
                "{} is outside the directories open to transfers ({}); use a path under one of them",
                resolved.display(),
                allowed.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
            ))
        })
    }

    async fn transfer<F, Fut>(
        &self,
        progress: Option<(Peer<RoleServer>, ProgressToken)>,
        run: F,
    ) -> Result<TransferResult>
    where
        F: FnOnce(Option<Progress>) -> Fut,
        Fut: std::future::Future<Output = ssh_session_core::Result<Transfer>>,
    {
        // One task sends the notifications in order (a task per notification could
        // deliver them out of order).
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ProgressNotificationParam>();
        let callback = progress.map(|(peer, token)| -> Progress {
            tokio::spawn(async move {
                while let Some(param) = rx.recv().await {
                    let _ = peer.notify_progress(param).await;
                }
            });
            Arc::new(move |p| {
                let mut param = ProgressNotificationParam::new(token.clone(), p.bytes as f64)
                    .with_message(p.path.clone());
                if let Some(total) = p.total {
                    param = param.with_total(total as f64);
                }
                let _ = tx.send(param);
            })
        });
        let t = run(callback).await?;
        Ok(TransferResult {
            bytes: t.bytes,
            files: t.files,
            sha256: t.sha256,
            duration_ms: t.duration.as_millis() as u64,
        })
    }
}

#[tool_router(router = files_router, vis = "pub(super)")]
impl SshSessionServer {
    /// Reads a remote file.
    #[tool(
        description = "Read a remote file (relative to the session's cwd): utf-8 or base64 content, sha256 (for ssh_write_file's expected_sha256), truncated (page with offset).",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    async fn ssh_read_file(
        &self,
        Parameters(args): Parameters<ReadFileArgs>,
    ) -> std::result::Result<Json<ReadFileResult>, McpError> {
        let limit = args
            .limit
            .unwrap_or(self.config.max_output_chars as u64)
            .min(MAX_READ_BYTES);
        let files = self.files_of(&args.session).await?;
        let read = files
            .read(
                &args.path,
                FileRange::new(args.offset.unwrap_or(0), Some(limit)),
            )
            .await?;
        let (content, encoding) = match String::from_utf8(read.data) {
            Ok(text) => (text, "utf-8"),
            Err(e) => (
                base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
                "base64",
            ),
        };
        Ok(Json(ReadFileResult {
            content,
            encoding: encoding.into(),
            size: read.size,
            sha256: read.sha256,
            mode: octal(read.mode),
            truncated: read.truncated,
        }))
    }

    /// Writes a remote file atomically.
    #[tool(
        description = "Write a remote file atomically (mode kept). With expected_sha256 it is refused, unchanged, if the file changed since it was read.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    async fn ssh_write_file(
        &self,
        Parameters(args): Parameters<WriteFileArgs>,
    ) -> std::result::Result<Json<WriteFileResult>, McpError> {
        self.check_change(&args.session, "writing files")?;
        let data = match args.encoding.as_deref().unwrap_or("utf-8") {
            "utf-8" | "utf8" => args.content.into_bytes(),
            "base64" => base64::engine::general_purpose::STANDARD
                .decode(args.content.as_bytes())
                .map_err(|e| McpError::InvalidArgument {
                    name: "content",
                    detail: format!("not valid base64: {e}"),
                })?,
            other => {
                return Err(McpError::InvalidArgument {
                    name: "encoding",
                    detail: format!("{other:?}: use \"utf-8\" or \"base64\""),
                })
            }
        };
        let options = WriteOptions::default()
            .expected_sha256(args.expected_sha256)
            .mode(parse_mode(args.mode.as_deref())?)
            .create_dirs(args.create_dirs.unwrap_or(false));
        let files = self.files_of(&args.session).await?;
        let w = files.write(&args.path, &data, options).await?;
        Ok(Json(WriteFileResult {
            path: w.path,
            size: w.size,
            sha256: w.sha256,
        }))
    }

    /// Lists a remote directory.
    #[tool(
        description = "List a remote directory: name, type (file/dir/symlink/other), size, mode, modified.",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    async fn ssh_list_dir(
        &self,
        Parameters(args): Parameters<ListDirArgs>,
    ) -> std::result::Result<Json<ListDirResult>, McpError> {
        let files = self.files_of(&args.session).await?;
        let entries = files.list(args.path.as_deref().unwrap_or(".")).await?;
        Ok(Json(ListDirResult {
            entries: entries
                .into_iter()
                .map(|e| DirEntryItem {
                    name: e.name,
                    r#type: e.stat.kind.name().into(),
                    size: e.stat.size,
                    mode: octal(e.stat.mode),
                    modified: e.stat.modified.map(timestamp),
                })
                .collect(),
        }))
    }

    /// Uploads a local file or directory.
    #[tool(
        description = "Copy a local file or directory (under the client's roots) to the host.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    async fn ssh_upload(
        &self,
        Parameters(args): Parameters<UploadArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> std::result::Result<Json<TransferResult>, McpError> {
        self.check_change(&args.session, "uploading files")?;
        let local = self.local_path(&peer, &args.local_path).await?;
        let files = self.files_of(&args.session).await?;
        let progress = meta.get_progress_token().map(|t| (peer, t));
        let result = self
            .transfer(progress, |p| files.upload(&local, &args.remote_path, p))
            .await?;
        Ok(Json(result))
    }

    /// Downloads a remote file or directory.
    #[tool(
        description = "Copy a remote file or directory to a local path under the client's roots.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    async fn ssh_download(
        &self,
        Parameters(args): Parameters<DownloadArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> std::result::Result<Json<TransferResult>, McpError> {
        let local = self.local_path(&peer, &args.local_path).await?;
        let files = self.files_of(&args.session).await?;
        let progress = meta.get_progress_token().map(|t| (peer, t));
        let result = self
            .transfer(progress, |p| files.download(&args.remote_path, &local, p))
            .await?;
        Ok(Json(result))
    }
}
