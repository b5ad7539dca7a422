//! [`HostInfo`]: what a host is and how loaded it is, in one round trip on its own exec
//! channel (the session's shell is not used, so it works while a command runs).

use std::time::Duration;

use crate::error::{Error, Result};
use crate::transport::{run, Transport};

/// The probe, run by `sh` whatever the login shell: no single quotes and no backslashes,
/// so it survives being single-quoted for bash, zsh and fish alike. Each section starts
/// with an `@name` line; a missing tool leaves its section empty.
const PROBE: &str =
    "echo @os; (. /etc/os-release && echo \"$PRETTY_NAME\") 2>/dev/null || uname -s; \
echo @kernel; uname -sr; echo @arch; uname -m; \
echo @cpus; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null; \
echo @load; cat /proc/loadavg 2>/dev/null; echo @uptime; cat /proc/uptime 2>/dev/null; \
echo @mem; grep -E \"^(MemTotal|MemAvailable):\" /proc/meminfo 2>/dev/null; \
echo @disks; (command -v timeout >/dev/null && timeout 5 df -kP || df -kP) 2>/dev/null; true";

/// A host's identity and load, from [`ShellSession::host_info`](crate::ShellSession::host_info).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct HostInfo {
    /// The distribution's name (`Debian GNU/Linux 12 (bookworm)`), or the kernel's name.
    pub os: String,
    /// Kernel name and release (`Linux 6.1.0-18-amd64`).
    pub kernel: String,
    /// Machine architecture (`x86_64`).
    pub arch: String,
    /// Online CPUs.
    pub cpus: Option<u32>,
    /// Load averages over 1, 5 and 15 minutes.
    pub load: Option<[f64; 3]>,
    /// Memory in bytes.
    pub memory_total: Option<u64>,
    /// Memory available to new programs, in bytes.
    pub memory_available: Option<u64>,
    /// Real file systems (not tmpfs and the like), by mount point.
    pub disks: Vec<Disk>,
    /// Time since boot.
    pub uptime: Option<Duration>,
}

/// One mounted file system of [`HostInfo`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Disk {
    /// Where it is mounted.
    pub mount: String,
    /// The device or source (`/dev/sda1`, `overlay`).
    pub source: String,
    /// Size in bytes.
    pub size: u64,
    /// Bytes used.
    pub used: u64,
    /// Bytes available to unprivileged users.
    pub available: u64,
}

/// The most the probe may take. `df` is given 5 s of it on the host (a stale network
/// mount blocks it for ever), where `timeout` exists.
const PROBE_LIMIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Runs the probe on `transport` for session `session`.
pub(crate) async fn probe(transport: &dyn Transport, session: &str) -> Result<HostInfo> {
    let out = tokio::time::timeout(PROBE_LIMIT, run(transport, &format!("sh -c '{PROBE}'")))
        .await
        .map_err(|_| Error::NoAnswer {
            session: session.to_string(),
            waited: PROBE_LIMIT,
        })??;
    let text = String::from_utf8_lossy(&out.stdout);
    let info = parse(&text);
    if info.kernel.is_empty() {
        return Err(Error::InvalidCommand {
            session: session.to_string(),
            reason: format!(
                "the host information probe printed nothing usable (exit {:?}): {}",
                out.exit_status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(info)
}

/// Parses the probe's output. Pure, so every format quirk is a unit test.
fn parse(text: &str) -> HostInfo {
    let mut info = HostInfo::default();
    let mut section = "";
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('@') {
            section = name.trim();
            continue;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match section {
            "os" if info.os.is_empty() => info.os = line.to_string(),
            "kernel" if info.kernel.is_empty() => info.kernel = line.to_string(),
            "arch" if info.arch.is_empty() => info.arch = line.to_string(),
            "cpus" => info.cpus = info.cpus.or(line.parse().ok()),
            "load" => {
                let v: Vec<f64> = line
                    .split_whitespace()
                    .take(3)
                    .filter_map(|x| x.parse().ok())
                    .collect();
                if let [a, b, c] = v[..] {
                    info.load = Some([a, b, c]);
                }
            }
            "uptime" => {
                info.uptime = line
                    .split_whitespace()
                    .next()
                    .and_then(|s| s.parse::<f64>().ok())
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(Duration::from_secs_f64);
            }
            "mem" => {
                let mut parts = line.split_whitespace();
                let (Some(key), Some(kb)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let bytes = kb.parse::<u64>().ok().map(|k| k * 1024);
                match key {
                    "MemTotal:" => info.memory_total = bytes,
                    "MemAvailable:" => info.memory_available = bytes,
                    _ => {}
                }
            }
            "disks" => {
                if let Some(disk) = disk(line) {
                    if !info.disks.iter().any(|d| d.mount == disk.mount) {
                        info.disks.push(disk);
                    }
                }
            }
            _ => {}
        }
    }
    info
}

/// One `df -kP` line, if it is a real file system: a device path, or whatever is mounted
/// at `/` (a container's overlay).
fn disk(line: &str) -> Option<Disk> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 6 || f[0] == "Filesystem" {
        return None;
    }
    // The mount point is the last field and may contain spaces: everything after the
    // capacity column.
    let mount = f[5..].join(" ");
    if !(f[0].starts_with('/') || mount == "/") {
        return None;
    }
    let kb = |s: &str| s.parse::<u64>().ok().map(|k| k * 1024);
    Some(Disk {
        mount,
        source: f[0].to_string(),
        size: kb(f[1])?,
        used: kb(f[2])?,
        available: kb(f[3])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_survives_single_quoting() {
        assert!(
            !PROBE.contains('\''),
            "a single quote would end the quoting"
        );
        assert!(
            !PROBE.contains('\\'),
            "fish reads backslashes in single quotes"
        );
    }

    #[test]
    fn a_linux_hosts_probe_parses() {
        let text = "@os\nDebian GNU/Linux 12 (bookworm)\n@kernel\nLinux 6.1.0-18-amd64\n@arch\nx86_64\n\
@cpus\n2\n@load\n0.52 0.58 0.59 1/189 12345\n@uptime\n3600.25 7000.00\n@mem\nMemTotal:       24576000 kB\n\
MemAvailable:   20000000 kB\n@disks\nFilesystem     1024-blocks     Used Available Capacity Mounted on\n\
overlay          263174212 13200000 236000000       6% /\ntmpfs               65536        0     65536       0% /dev\n\
/dev/vda         263174212 13200000 236000000       6% /etc/hosts\n/dev/sdb1 100 50 50 50% /mnt/my disk\n";
        let info = parse(text);
        assert_eq!(info.os, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(
            (info.kernel.as_str(), info.arch.as_str()),
            ("Linux 6.1.0-18-amd64", "x86_64")
        );
        assert_eq!(info.cpus, Some(2));
        assert_eq!(info.load, Some([0.52, 0.58, 0.59]));
        assert_eq!(info.uptime, Some(Duration::from_secs_f64(3600.25)));
        assert_eq!(info.memory_total, Some(24_576_000 * 1024));
        assert_eq!(info.memory_available, Some(20_000_000 * 1024));
        let mounts: Vec<&str> = info.disks.iter().map(|d| d.mount.as_str()).collect();
        assert_eq!(
            mounts,
            ["/", "/etc/hosts", "/mnt/my disk"],
            "tmpfs left out"
        );
        assert_eq!(info.disks[0].used, 13_200_000 * 1024);
    }

    #[test]
    fn missing_sections_leave_fields_empty() {
        let info = parse("@os\nDarwin\n@kernel\nDarwin 23.1.0\n@arch\narm64\n@cpus\n@load\n@uptime\n@mem\n@disks\n");
        assert_eq!(info.os, "Darwin");
        assert_eq!(
            (info.cpus, info.load, info.uptime, info.memory_total),
            (None, None, None, None)
        );
        assert!(info.disks.is_empty());
    }
}
