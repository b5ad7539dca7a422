//! Installs the browser terminal's third-party code (xterm.js and its fit add-on) from the
//! npm registry with `npm ci`, exactly as `assets/package-lock.json` pins it, into Cargo's
//! `OUT_DIR`, where `src/assets.rs` embeds it: nothing third-party is committed, nothing
//! is fetched at run time, and a build writes nothing outside `OUT_DIR`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

/// The files the pages load, from `node_modules`, as they are named in `OUT_DIR`.
const FILES: &[(&str, &str)] = &[
    ("@xterm/xterm/lib/xterm.js", "xterm.js"),
    ("@xterm/xterm/css/xterm.css", "xterm.css"),
    ("@xterm/addon-fit/lib/addon-fit.js", "addon-fit.js"),
];

fn main() {
    println!("cargo:rerun-if-changed=assets/package.json");
    println!("cargo:rerun-if-changed=assets/package-lock.json");
    println!("cargo:rerun-if-env-changed=SSH_SESSION_WEB_NODE_MODULES");
    let out = PathBuf::from(
        env::var_os("OUT_DIR")
            .unwrap_or_else(|| fail("OUT_DIR is not set: run this through cargo")),
    );
    let modules = match env::var_os("SSH_SESSION_WEB_NODE_MODULES") {
        // An offline build brings its own copy (e.g. from `npm ci` run beforehand).
        Some(dir) => PathBuf::from(dir),
        None => npm_ci(&out),
    };
    for (from, to) in FILES {
        let from = modules.join(from);
        if let Err(e) = fs::copy(&from, out.join(to)) {
            fail(&format!(
                "{} is missing ({e}): the npm install is incomplete; remove {} and build again",
                from.display(),
                out.join("npm").display()
            ));
        }
    }
}

/// Runs `npm ci` on a copy of the manifest and lockfile in `OUT_DIR/npm` (once per
/// lockfile: Cargo reruns this only when they change) and returns its `node_modules`.
fn npm_ci(out: &Path) -> PathBuf {
    let dir = out.join("npm");
    let lock = fs::read("assets/package-lock.json").unwrap_or_else(|e| {
        fail(&format!("assets/package-lock.json cannot be read: {e}"));
    });
    let stamp = dir.join("installed-lock.json");
    if fs::read(&stamp).ok().as_deref() == Some(&lock[..]) {
        return dir.join("node_modules");
    }
    fs::create_dir_all(&dir).unwrap_or_else(|e| fail(&format!("{}: {e}", dir.display())));
    for name in ["package.json", "package-lock.json"] {
        fs::copy(Path::new("assets").join(name), dir.join(name))
            .unwrap_or_else(|e| fail(&format!("assets/{name}: {e}")));
    }
    let npm = env::var_os("NPM").unwrap_or_else(|| "npm".into());
    let status = Command::new(&npm)
        .args([
            "ci",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .current_dir(&dir)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!(
            "`npm ci` in {} failed ({s}): it installs xterm.js from the npm registry as \
             assets/package-lock.json pins it; check that the registry is reachable, or set \
             SSH_SESSION_WEB_NODE_MODULES to a node_modules directory with those packages",
            dir.display()
        )),
        Err(e) => fail(&format!(
            "npm could not be run ({e}): building ssh-session-web installs xterm.js with npm \
             (Node.js), as assets/package-lock.json pins it. Install Node.js and npm (Debian: \
             apt install nodejs npm), or set SSH_SESSION_WEB_NODE_MODULES to a node_modules \
             directory holding @xterm/xterm 6.0.0 and @xterm/addon-fit 0.11.0"
        )),
    }
    fs::write(&stamp, &lock).unwrap_or_else(|e| fail(&format!("{}: {e}", stamp.display())));
    dir.join("node_modules")
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
