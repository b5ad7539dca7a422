//! Whether a running command is waiting for a secret: its output ends with a password or
//! passphrase prompt (`[sudo] password for deploy: `, `Enter passphrase for key ...: `),
//! so a caller is told so instead of seeing a silent timeout. Pure, unit-tested.

/// What a prompt asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SecretKind {
    /// A password (`sudo`, `su`, `ssh`, `git` over https, database shells).
    Password,
    /// A key's passphrase (`ssh-add`, `ssh-keygen -p`, `gpg`, `openssl`).
    Passphrase,
    /// A PIN or a one-time code.
    Pin,
}

impl SecretKind {
    /// `password`, `passphrase` or `pin`.
    pub fn name(self) -> &'static str {
        match self {
            SecretKind::Password => "password",
            SecretKind::Passphrase => "passphrase",
            SecretKind::Pin => "pin",
        }
    }
}

/// A prompt a running command is waiting at (see [`ExecResult::waiting_for`](crate::ExecResult::waiting_for)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecretPrompt {
    /// What it asks for.
    pub kind: SecretKind,
    /// The prompt as shown, trimmed (`[sudo] password for deploy:`).
    pub text: String,
}

/// The longest last line taken for a prompt: prompts are short, log lines that happen to
/// contain "password" and end with a colon are not.
const MAX_PROMPT: usize = 160;

/// The prompt `tail` (the end of a running command's output) ends with, if it asks for a
/// secret: its last line, after escape sequences are dropped, ends with `:` and names a
/// password, passphrase, PIN or one-time code.
pub(crate) fn detect(tail: &[u8]) -> Option<SecretPrompt> {
    let text = String::from_utf8_lossy(tail);
    let line = text.rsplit(['\n', '\r']).next()?;
    let line = strip_escapes(line);
    let line = line.trim();
    if line.is_empty() || line.len() > MAX_PROMPT || !line.ends_with(':') {
        return None;
    }
    let lower = line.to_lowercase();
    let has_word = |w: &str| {
        lower
            .split(|c: char| !c.is_alphanumeric())
            .any(|word| word == w)
    };
    let kind = if lower.contains("passphrase") || lower.contains("pass phrase") {
        SecretKind::Passphrase
    } else if lower.contains("password") || lower.contains("passwort") {
        SecretKind::Password
    } else if has_word("pin")
        || lower.contains("one-time")
        || lower.contains("verification code")
        || has_word("otp")
    {
        SecretKind::Pin
    } else {
        return None;
    };
    Some(SecretPrompt {
        kind,
        text: line.to_string(),
    })
}

/// `line` without CSI and OSC sequences (colours, titles): what a terminal shows.
fn strip_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            if !c.is_control() {
                out.push(c);
            }
            continue;
        }
        match chars.next() {
            Some('[') => {
                // Parameters, then one final byte in @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                // Up to BEL or ESC \.
                while let Some(c) = chars.next() {
                    if c == '\x07' || (c == '\x1b' && chars.peek() == Some(&'\\')) {
                        chars.next();
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(tail: &str) -> Option<SecretKind> {
        detect(tail.as_bytes()).map(|p| p.kind)
    }

    #[test]
    fn the_prompts_people_meet() {
        assert_eq!(
            kind("[sudo] password for deploy: "),
            Some(SecretKind::Password)
        );
        assert_eq!(kind("some output\nPassword: "), Some(SecretKind::Password));
        assert_eq!(
            kind("Password for 'https://me@github.com': "),
            Some(SecretKind::Password)
        );
        assert_eq!(kind("deploy@db's password: "), Some(SecretKind::Password));
        assert_eq!(
            kind("Enter passphrase for key '/home/me/.ssh/id_ed25519': "),
            Some(SecretKind::Passphrase)
        );
        assert_eq!(kind("Enter PEM pass phrase:"), Some(SecretKind::Passphrase));
        assert_eq!(kind("Enter PIN for 'PIV Card':"), Some(SecretKind::Pin));
        assert_eq!(kind("Verification code: "), Some(SecretKind::Pin));
        assert_eq!(kind("\x1b[1mPassword:\x1b[0m "), Some(SecretKind::Password));
        let p = detect(b"x\r\n[sudo] password for root: ").unwrap();
        assert_eq!(p.text, "[sudo] password for root:");
    }

    #[test]
    fn other_output_is_not_a_prompt() {
        for tail in [
            "",
            "Password changed.\n",
            "Continue? [y/N] ",
            "password reset emails sent\n$ ",
            "Shopping list: ",
            "spinning: ",
            &format!("{}password:", "x".repeat(200)),
        ] {
            assert_eq!(kind(tail), None, "{tail:?}");
        }
    }
}
