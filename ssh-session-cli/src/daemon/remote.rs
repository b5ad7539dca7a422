//! The daemon's side of `cp`, `forward` and multi-session `exec`: thin over the core.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ssh_session_core::files::{FileKind, Progress, RemoteFiles};
use ssh_session_core::tunnel::{TunnelKind, TunnelSpec};
use ssh_session_core::ExecOptions;

use super::handler::Writer;
use super::Daemon;
use crate::error::classify;
use crate::protocol::{
    encode, CopySpec, CopyView, Direction, ErrorKind, ManyView, Response, TunnelView,
};

/// Copies as asked, streaming progress (about every MiB) before the result.
pub(super) async fn copy(daemon: &Daemon, spec: CopySpec, w: &mut Writer) -> std::io::Result<()> {
    let files = match daemon.manager.get(&spec.name) {
        Ok(session) => match session.files().await {
            Ok(files) => files,
            Err(e) => return w.error(&e).await,
        },
        Err(e) => return w.error(&e).await,
    };
    let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel();
    let progress: Progress = Arc::new(move |p| {
        let _ = progress_tx.send(Response::Progress {
            bytes: p.bytes,
            total: p.total,
        });
    });
    let run = transfer(&files, &spec, progress);
    tokio::pin!(run);
    let outcome = loop {
        tokio::select! {
            done = &mut run => break done,
            Some(p) = progress_rx.recv() => w.send(&p).await?,
        }
    };
    match outcome {
        Ok(view) => w.send(&Response::Copied(view)).await,
        Err(Refusal::Core(e)) => w.error(&e).await,
        Err(Refusal::Invalid(message)) => {
            w.send(&Response::Error {
                error: ErrorKind::Invalid,
                message,
            })
            .await
        }
    }
}

enum Refusal {
    Core(ssh_session_core::Error),
    Invalid(String),
}

impl From<ssh_session_core::Error> for Refusal {
    fn from(e: ssh_session_core::Error) -> Self {
        Refusal::Core(e)
    }
}

/// `cp` the way `cp` and `scp` do it: into a directory that exists, under the source's
/// own name; directories only with `-r`.
async fn transfer(
    files: &RemoteFiles,
    spec: &CopySpec,
    progress: Progress,
) -> Result<CopyView, Refusal> {
    let name_of = |p: &str| {
        p.trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    match spec.direction {
        Direction::Upload => {
            let local = &spec.local;
            if local.is_dir() && !spec.recursive {
                return Err(Refusal::Invalid(format!(
                    "{} is a directory: use cp -r to copy it",
                    local.display()
                )));
            }
            let mut remote = spec.remote.clone();
            let into_dir = match files.stat(&remote).await {
                Ok(st) => st.kind == FileKind::Dir,
                Err(_) => remote.ends_with('/'),
            };
            if into_dir {
                let name = name_of(&local.to_string_lossy());
                remote = format!("{}/{name}", remote.trim_end_matches('/'));
            }
            let t = files.upload(local, &remote, Some(progress)).await?;
            Ok(CopyView::of(
                &t,
                format!("{}:{}", spec.name, files.resolve(&remote)),
            ))
        }
        Direction::Download => {
            let source = files.stat(&spec.remote).await?;
            if source.kind == FileKind::Dir && !spec.recursive {
                return Err(Refusal::Invalid(format!(
                    "{}:{} is a directory: use cp -r to copy it",
                    spec.name, spec.remote
                )));
            }
            let mut local = spec.local.clone();
            if local.is_dir() {
                local = local.join(name_of(&spec.remote));
            }
            let t = files.download(&spec.remote, &local, Some(progress)).await?;
            Ok(CopyView::of(&t, display(&local)))
        }
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// Opens a tunnel.
pub(super) async fn forward(
    daemon: &Daemon,
    name: &str,
    kind: &str,
    listen: Option<String>,
    target: Option<String>,
) -> Response {
    let kind: TunnelKind = match kind.parse() {
        Ok(k) => k,
        Err(message) => {
            return Response::Error {
                error: ErrorKind::Invalid,
                message,
            }
        }
    };
    let mut spec = match kind {
        TunnelKind::Socks => TunnelSpec::socks(listen.as_deref()),
        TunnelKind::Remote => TunnelSpec::remote(listen.as_deref(), ""),
        _ => TunnelSpec::local(listen.as_deref(), ""),
    };
    spec.target = target;
    match daemon.manager.open_tunnel(name, spec).await {
        Ok(t) => Response::Tunnel {
            tunnel: TunnelView::from(&t),
        },
        Err(e) => Response::Error {
            error: classify(&e),
            message: e.to_string(),
        },
    }
}

/// Runs one command on every named session at once.
pub(super) async fn exec_many(
    daemon: &Daemon,
    names: &[String],
    command: &str,
    timeout: Duration,
    source: Option<String>,
) -> Response {
    let options = ExecOptions {
        timeout: Some(timeout),
        source: Some(source.unwrap_or_else(|| "cli".into())),
        ..Default::default()
    };
    let results = daemon
        .manager
        .exec_many(names, command, options)
        .await
        .into_iter()
        .map(|r| match r.result {
            Ok(out) => ManyView {
                session: r.session,
                output: encode(&out.output),
                exit_code: out.exit_code,
                running: out.is_running(),
                error: None,
            },
            Err(e) => ManyView {
                session: r.session,
                output: String::new(),
                exit_code: None,
                running: false,
                error: Some((classify(&e), e.to_string())),
            },
        })
        .collect();
    Response::Many { results }
}
