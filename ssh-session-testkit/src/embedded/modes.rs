//! Terminal settings from the SSH `pty-req` (RFC 4254 §8 encoded modes) and
//! `window-change` requests, applied with termios/ioctl.
//!
//! Clients of this project send `ECHO=0` to get a terminal that does not
//! echo their input back, so at least the local-mode flags must be honoured;
//! the common input/output flags and control characters are applied too.

use std::io;
use std::os::fd::RawFd;

use russh::Pty;

/// Which termios flag word a boolean mode lives in.
enum Word {
    Input,
    Output,
    Local,
}

/// Boolean modes we apply, with their termios flag.
fn flag(mode: Pty) -> Option<(Word, libc::tcflag_t)> {
    use Word::*;
    Some(match mode {
        Pty::IGNPAR => (Input, libc::IGNPAR),
        Pty::PARMRK => (Input, libc::PARMRK),
        Pty::INPCK => (Input, libc::INPCK),
        Pty::ISTRIP => (Input, libc::ISTRIP),
        Pty::INLCR => (Input, libc::INLCR),
        Pty::IGNCR => (Input, libc::IGNCR),
        Pty::ICRNL => (Input, libc::ICRNL),
        Pty::IXON => (Input, libc::IXON),
        Pty::IXANY => (Input, libc::IXANY),
        Pty::IXOFF => (Input, libc::IXOFF),
        Pty::IMAXBEL => (Input, libc::IMAXBEL),
        Pty::IUTF8 => (Input, libc::IUTF8),
        Pty::ISIG => (Local, libc::ISIG),
        Pty::ICANON => (Local, libc::ICANON),
        Pty::ECHO => (Local, libc::ECHO),
        Pty::ECHOE => (Local, libc::ECHOE),
        Pty::ECHOK => (Local, libc::ECHOK),
        Pty::ECHONL => (Local, libc::ECHONL),
        Pty::NOFLSH => (Local, libc::NOFLSH),
        Pty::TOSTOP => (Local, libc::TOSTOP),
        Pty::IEXTEN => (Local, libc::IEXTEN),
        Pty::ECHOCTL => (Local, libc::ECHOCTL),
        Pty::ECHOKE => (Local, libc::ECHOKE),
        Pty::OPOST => (Output, libc::OPOST),
        Pty::ONLCR => (Output, libc::ONLCR),
        Pty::OCRNL => (Output, libc::OCRNL),
        Pty::ONOCR => (Output, libc::ONOCR),
        Pty::ONLRET => (Output, libc::ONLRET),
        _ => return None,
    })
}

/// Control characters we apply, with their index in `c_cc`.
fn control_char(mode: Pty) -> Option<usize> {
    Some(match mode {
        Pty::VINTR => libc::VINTR,
        Pty::VQUIT => libc::VQUIT,
        Pty::VERASE => libc::VERASE,
        Pty::VKILL => libc::VKILL,
        Pty::VEOF => libc::VEOF,
        Pty::VEOL => libc::VEOL,
        Pty::VEOL2 => libc::VEOL2,
        Pty::VSTART => libc::VSTART,
        Pty::VSTOP => libc::VSTOP,
        Pty::VSUSP => libc::VSUSP,
        Pty::VREPRINT => libc::VREPRINT,
        Pty::VWERASE => libc::VWERASE,
        Pty::VLNEXT => libc::VLNEXT,
        Pty::VDISCARD => libc::VDISCARD,
        _ => return None,
    })
}

/// Applies the client's terminal modes to the terminal `fd` (the slave, so
/// they are in place before the shell starts).
pub(super) fn apply_modes(fd: RawFd, modes: &[(Pty, u32)]) -> io::Result<()> {
    if modes.is_empty() {
        return Ok(());
    }
    // SAFETY: termios is plain data; tcgetattr fills it from a valid fd.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for &(mode, value) in modes {
        if let Some((word, bit)) = flag(mode) {
            let target = match word {
                Word::Input => &mut t.c_iflag,
                Word::Output => &mut t.c_oflag,
                Word::Local => &mut t.c_lflag,
            };
            if value != 0 {
                *target |= bit;
            } else {
                *target &= !bit;
            }
        } else if let Some(index) = control_char(mode) {
            // OpenSSH sends 255 for "disabled", Linux disables with 0.
            t.c_cc[index] = if value == 255 { 0 } else { value as libc::cc_t };
        }
    }
    // SAFETY: `t` came from tcgetattr and was only edited field by field.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the terminal size (`TIOCSWINSZ`); the kernel sends `SIGWINCH` to
/// the foreground job. Zero rows or columns (a client with no real
/// terminal) fall back to 80x24 so full-screen programs still work.
pub(super) fn set_winsize(
    fd: RawFd,
    cols: u32,
    rows: u32,
    pix_w: u32,
    pix_h: u32,
) -> io::Result<()> {
    let clamp = |v: u32, default: u16| {
        if v == 0 {
            default
        } else {
            v.min(u16::MAX as u32) as u16
        }
    };
    let ws = libc::winsize {
        ws_row: clamp(rows, 24),
        ws_col: clamp(cols, 80),
        ws_xpixel: clamp(pix_w, 0),
        ws_ypixel: clamp(pix_h, 0),
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct that lives on our stack.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
