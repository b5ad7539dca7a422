//! One session channel of the embedded server: collect pty/env requests,
//! start the shell or command, pump data both ways, report how it ended.

use std::os::fd::AsRawFd;
use std::process::ExitStatus;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use russh::server::{Handle, Msg};
use russh::{Channel, ChannelMsg};

use super::modes::set_winsize;
use super::process::{spawn_pipes, spawn_pty, PtyRequest, Running};
use super::signals::{signal_name, signal_number};
use super::State;

/// After the child exits, output still buffered in the PTY or pipes is
/// forwarded; a background job that keeps the terminal open must not keep
/// the channel open forever, so draining stops after this long without
/// progress.
const DRAIN_IDLE: Duration = Duration::from_millis(500);

/// Serves one session channel until it closes.
pub(super) async fn serve(channel: Channel<Msg>, handle: Handle, state: Arc<State>) {
    let id = channel.id();
    let (mut rx, tx) = channel.split();
    let mut pty = None;
    let mut env = Vec::new();
    // Replies were already sent by the connection handler; here we act.
    let command = loop {
        match rx.wait().await {
            None | Some(ChannelMsg::Close) => return,
            Some(ChannelMsg::RequestPty {
                term,
                col_width,
                row_height,
                pix_width,
                pix_height,
                terminal_modes,
                ..
            }) => {
                pty = Some(PtyRequest {
                    term,
                    cols: col_width,
                    rows: row_height,
                    pix_width,
                    pix_height,
                    modes: terminal_modes,
                })
            }
            Some(ChannelMsg::WindowChange {
                col_width,
                row_height,
                ..
            }) => {
                if let Some(p) = pty.as_mut() {
                    (p.cols, p.rows) = (col_width, row_height);
                }
            }
            Some(ChannelMsg::SetEnv {
                variable_name,
                variable_value,
                ..
            }) => env.push((variable_name, variable_value)),
            Some(ChannelMsg::RequestShell { .. }) => break None,
            Some(ChannelMsg::Exec { command, .. }) => break Some(command),
            Some(_) => {}
        }
    };

    let spawned = match &pty {
        Some(p) => spawn_pty(&state, command.as_deref(), &env, p, &tx),
        None => spawn_pipes(&state, command.as_deref(), &env, &tx),
    };
    let mut running = match spawned {
        Ok(r) => r,
        Err(e) => {
            let msg = format!(
                "embedded ssh server: cannot start {}: {e}\r\n",
                state.shell.display()
            );
            let _ = tx.extended_data_bytes(1, msg.into_bytes()).await;
            let _ = handle.exit_status_request(id, 127).await;
            let _ = tx.eof().await;
            let _ = tx.close().await;
            return;
        }
    };
    lock(&state).insert(running.pgid);

    let status = loop {
        tokio::select! {
            status = running.child.wait() => break status,
            msg = rx.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    if let Some(stdin) = &running.stdin {
                        let _ = stdin.send(data);
                    }
                }
                Some(ChannelMsg::Eof) => running.stdin = None,
                Some(ChannelMsg::WindowChange { col_width, row_height, pix_width, pix_height }) => {
                    if let Some(fd) = &running.pty_control {
                        let _ = set_winsize(fd.as_raw_fd(), col_width, row_height, pix_width, pix_height);
                    }
                }
                Some(ChannelMsg::Signal { signal }) => {
                    if let Some(signo) = signal_number(&signal) {
                        // SAFETY: kill has no memory-safety preconditions.
                        unsafe { libc::kill(-running.pgid, signo) };
                    }
                }
                None | Some(ChannelMsg::Close) => {
                    // The client is gone; the child still runs (not reaped),
                    // so its group id cannot have been reused yet.
                    // SAFETY: kill has no memory-safety preconditions.
                    unsafe { libc::kill(-running.pgid, libc::SIGKILL) };
                    lock(&state).remove(&running.pgid);
                    return;
                }
                Some(_) => {}
            },
        }
    };
    lock(&state).remove(&running.pgid);
    running.stdin = None;
    if !drain(&mut running, &mut rx).await {
        return;
    }
    match status {
        Ok(status) => report_exit(&handle, id, status).await,
        Err(_) => {
            let _ = handle.exit_status_request(id, 255).await;
        }
    }
    let _ = tx.eof().await;
    let _ = tx.close().await;
}

/// Waits for the output pumps to finish, as long as they make progress.
/// Keeps reading channel messages meanwhile, because russh blocks the whole
/// connection when a channel's message queue is full. Returns false if the
/// client closed the channel.
async fn drain(running: &mut Running, rx: &mut russh::ChannelReadHalf) -> bool {
    let mut last = running.forwarded.load(Ordering::Relaxed);
    let mut tick = tokio::time::interval(DRAIN_IDLE);
    tick.tick().await;
    loop {
        tokio::select! {
            done = running.pumps.join_next() => {
                if done.is_none() {
                    return true;
                }
            }
            msg = rx.wait() => {
                if matches!(msg, None | Some(ChannelMsg::Close)) {
                    return false;
                }
            }
            _ = tick.tick() => {
                let now = running.forwarded.load(Ordering::Relaxed);
                if now == last {
                    running.pumps.abort_all();
                    return true;
                }
                last = now;
            }
        }
    }
}

/// `exit-status` for a normal exit, `exit-signal` when killed by a signal
/// (which is what OpenSSH sends, and what clients map to "killed").
async fn report_exit(handle: &Handle, id: russh::ChannelId, status: ExitStatus) {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        let _ = handle.exit_status_request(id, code as u32).await;
    } else if let Some(signo) = status.signal() {
        let _ = handle
            .exit_signal_request(
                id,
                signal_name(signo),
                status.core_dumped(),
                String::new(),
                String::new(),
            )
            .await;
    }
}

fn lock(state: &State) -> std::sync::MutexGuard<'_, std::collections::HashSet<i32>> {
    state.children.lock().unwrap_or_else(|e| e.into_inner())
}
