//! The marker/exec protocol spoken with a remote POSIX shell, in one place and free of I/O.
//!
//! A session types commands into a long-lived shell and must know, exactly and without
//! guessing, where each command's output ends, what it exited with and where the shell now
//! is. The shell is *primed* once (`prime_script`) with a trailer function that prints a
//! marker containing an unguessable per-shell nonce, the exit code and `$PWD`. Each command is
//! then sent as one shell word ([`command_line`]) so that the shell has read all of it before
//! it runs any of it: a command that reads stdin can never swallow our trailer.
//!
//! Rules this module enforces (each has bitten a peer project):
//! - The marker is never present literally in anything we type: it is assembled from two shell
//!   variables, so neither PTY echo nor `history`/`set` output can complete a command early.
//! - Output that only looks like a marker (a wrong nonce) is ordinary output.
//! - Completion is found by scanning the byte stream, never by prompt regexes or sleeps.

mod encode;
mod parser;

pub(crate) use encode::{command_line, echo_of, LinePrefix, ShellFlavor, EDITOR_OFF_LINE};
pub(crate) use encode::{interactive_on_line, paste_keys, INTERACTIVE_OFF_KEYS};
pub(crate) use encode::{prime_script, probe_line, Output, Restore};
pub(crate) use parser::{Event, MarkerParser, OnlcrDecoder};

use rand::RngCore;

/// The per-shell secret that makes markers unguessable: 128 random bits as 32 hex digits.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Nonce(String);

impl Nonce {
    /// Draws a fresh nonce from the operating system's CSPRNG.
    pub(crate) fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        Nonce(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Builds a nonce from known text (tests only need determinism; never use in production).
    #[cfg(test)]
    pub(crate) fn fixed(s: &str) -> Self {
        Nonce(s.to_string())
    }

    /// The hex digits.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The marker token printed by the primed shell: `__ss` + nonce. Never typed as one piece.
    pub(crate) fn token(&self) -> Vec<u8> {
        format!("{TOKEN_PREFIX}{}", self.0).into_bytes()
    }
}

impl std::fmt::Debug for Nonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Debug output ends up in logs; the nonce must not, or a log reader could spoof markers.
        f.write_str("Nonce(..)")
    }
}

/// Literal prefix of every marker token.
pub(crate) const TOKEN_PREFIX: &str = "__ss";
