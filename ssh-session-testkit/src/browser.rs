//! Headless Chromium for browser end-to-end tests, driven over WebDriver.
//!
//! [`Browser::start`] runs its own `chromedriver` on a free loopback port with its own
//! Chromium profile directory, so any number of browsers can run at once (one per test, or
//! several in one test to play two users). The helpers panic with what the page showed
//! instead of returning errors, because in a test that message is the failure report.
//!
//! Keys: [`Browser::type_text`] passes its text to WebDriver "Element Send Keys", where
//! code points `U+E000..=U+E05D` stand for special keys ([`Key`] has them all):
//!
//! * Enter: `"\u{E007}"` (`Key::Enter`); Tab: `"\u{E004}"` (`Key::Tab`).
//! * Ctrl-C: `"\u{E009}c\u{E009}"` (`Key::Control + "c" + &Key::Control`). A modifier code
//!   presses the modifier and the same code again releases it; whatever is still held at
//!   the end of the string is released then, so `"\u{E009}c"` works too, but the explicit
//!   release keeps the chord from leaking into the rest of a longer string.
//!
//! The page receives real `keydown`/`keyup` events (`key == "c"`, `ctrlKey == true` for
//! Ctrl-C), which is what xterm.js listens to.
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`); it runs Chromium with `--no-sandbox` because tests run as
//! root in CI, where Chromium refuses to start sandboxed.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::net::TcpStream;

use crate::free_port;
use crate::spawner::{kill_tree, spawn_tied};

pub use fantoccini;
pub use fantoccini::key::Key;

/// Where Debian's `chromium` package puts the browser (a launcher script).
const CHROMIUM: &str = "/usr/bin/chromium";
/// util-linux's tool to start a program with a parent-death signal.
const SETPRIV: &str = "/usr/bin/setpriv";
/// Where Debian's `chromium-driver` package puts the WebDriver server.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long chromedriver may take to listen; it is usually ready in ~50 ms, but a loaded
/// CI machine running many tests at once can be much slower.
const DRIVER_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long Chromium may take to start and open its first page.
const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the `wait_for*` helpers look again: fast enough that tests do not idle,
/// slow enough not to flood chromedriver.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A headless Chromium with its own chromedriver and throw-away profile.
///
/// Dropping it kills chromedriver and every process below it (Chromium and its
/// renderers); [`Browser::close`] first ends the WebDriver session cleanly. It must be
/// used on the Tokio runtime that started it (fantoccini runs the session as a task
/// there), so share it within one test, not across tests.
pub struct Browser {
    client: Client,
    /// Dropped after `client`, so the session handle goes before its server.
    driver: Driver,
    port: u16,
}

impl fmt::Debug for Browser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Browser")
            .field("chromedriver_pid", &self.driver.child.id())
            .field("port", &self.port)
            .field("dir", &self.driver.dir.path())
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless Chromium session
    /// on `about:blank` with a 1200x800 window. Takes about a second.
    ///
    /// Panics if Chromium or chromedriver is not installed, or if either does not come up
    /// in time (the message includes chromedriver's log).
    pub async fn start() -> Browser {
        for (path, package) in [
            (CHROMIUM, "chromium"),
            (CHROMEDRIVER, "chromium-driver"),
            (SETPRIV, "util-linux"),
        ] {
            assert!(
                Path::new(path).exists(),
                "{path} not found (package {package}): install chromium and chromium-driver; \
                 .ci/run does"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("testkit-browser-")
            .tempdir()
            .expect("cannot create a temporary directory for the browser");
        let profile = dir.path().join("profile");
        std::fs::create_dir(&profile).expect("cannot create the browser profile directory");
        let launcher = write_launcher(dir.path());
        let log = dir.path().join("chromedriver.log");

        // free_port's port may be taken by someone else before chromedriver binds it;
        // chromedriver then exits at once, and another port will do.
        let mut attempt = 0;
        let (child, port) = loop {
            attempt += 1;
            let port = free_port();
            let mut child = spawn_driver(port, dir.path(), &log);
            match wait_listening(&mut child, port).await {
                Ok(()) => break (child, port),
                Err(why) if attempt < 3 && why.exited => {
                    let _ = child.wait();
                }
                Err(why) => {
                    kill_tree(child.id());
                    let _ = child.wait();
                    panic!(
                        "chromedriver on port {port} {}\n--- chromedriver log ---\n{}",
                        why.message,
                        read_log(&log)
                    );
                }
            }
        };
        // From here on, a panic drops `driver`, which cleans up.
        let driver = Driver { child, dir };

        let client = tokio::time::timeout(SESSION_TIMEOUT, connect(port, &launcher, &profile))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "chromedriver did not open a Chromium session within {SESSION_TIMEOUT:?}\n\
                     --- chromedriver log ---\n{}",
                    read_log(&log)
                )
            })
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver could not open a Chromium session: {e}\n\
                     --- chromedriver log ---\n{}",
                    read_log(&log)
                )
            });
        Browser {
            client,
            driver,
            port,
        }
    }

    /// The fantoccini client, for anything the helpers here do not cover (actions,
    /// cookies, windows, frames...).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The `--user-data-dir` this browser's Chromium runs with; every Chromium process of
    /// this browser has it on its command line, which is how tests can find them.
    pub fn profile_dir(&self) -> PathBuf {
        self.driver.dir.path().join("profile")
    }

    /// The process id of this browser's chromedriver; Chromium runs below it.
    pub fn chromedriver_pid(&self) -> u32 {
        self.driver.child.id()
    }

    /// Navigates to `url` and waits for the page's `load` event (WebDriver's default page
    /// load strategy). Scripts the page starts afterwards may still be running: wait for
    /// what they produce with [`Browser::wait_for`].
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    /// The URL of the current page, after redirects.
    pub async fn current_url(&self) -> String {
        self.client
            .current_url()
            .await
            .unwrap_or_else(|e| panic!("cannot read the current URL: {e}"))
            .to_string()
    }

    /// The page's visible text (`document.body.innerText`), with U+00A0 turned into plain
    /// spaces because xterm.js renders every space of a terminal row as U+00A0.
    pub async fn page_text(&self) -> String {
        match self.try_page_text().await {
            Ok(text) => text,
            Err(e) => panic!("cannot read the page text: {e}"),
        }
    }

    /// Focuses the element `css_selector` points at and types `text` into it, as WebDriver
    /// "Element Send Keys" does: it may contain the [`Key`] code points, see the module
    /// documentation for Enter, Tab and Ctrl-C.
    ///
    /// Works on xterm.js's `.xterm-helper-textarea` although it is invisible (zero size,
    /// off screen): Send Keys only needs the element to be focusable.
    pub async fn type_text(&self, css_selector: &str, text: &str) {
        let element = self.find(css_selector).await;
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("cannot type {text:?} into {css_selector:?}: {e}"));
    }

    /// Presses and releases one special `key` in the element `css_selector` points at;
    /// short for [`Browser::type_text`] with the key's code point.
    pub async fn press(&self, css_selector: &str, key: Key) {
        self.type_text(css_selector, &key).await;
    }

    /// Runs `script` in the page as the body of a function and returns what it `return`s
    /// (`null` without a `return`). `args` are available as `arguments[0]`, `arguments[1]`...
    /// A promise that is returned is awaited.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n--- script ---\n{script}"))
    }

    /// Runs `script` (a function body, as for [`Browser::execute`]) every 50 ms until it
    /// returns a truthy value (in the JavaScript sense), and returns that value.
    ///
    /// A script that throws counts as "not yet", so `return document.querySelector('x')
    /// .innerText` may run before the element exists. Panics after `timeout` with the
    /// last value or error and the page text.
    pub async fn wait_for(&self, script: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.client.execute(script, Vec::new()).await;
            match &last {
                Ok(v) if truthy(v) => return v.clone(),
                _ => {}
            }
            if Instant::now() >= deadline {
                let last = match last {
                    Ok(Value::Null) => "null (does the script `return` its value?)".to_string(),
                    Ok(v) => v.to_string(),
                    Err(e) => format!("error: {e}"),
                };
                panic!(
                    "timed out after {timeout:?} waiting for a truthy value from\n{script}\n\
                     last result: {last}\n--- page text ---\n{}",
                    self.page_text_for_report().await
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits until the `innerText` of the first element matching `css_selector` contains
    /// `needle`, and returns that text. U+00A0 is read as a space, so a needle such as
    /// `"$ echo hi"` matches xterm.js's `.xterm-rows`.
    ///
    /// Panics after `timeout` with the element's last text (or that nothing matched).
    pub async fn wait_for_text(
        &self,
        css_selector: &str,
        needle: &str,
        timeout: Duration,
    ) -> String {
        const SCRIPT: &str =
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;";
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.client.execute(SCRIPT, vec![json!(css_selector)]).await;
            let shown = match &last {
                Ok(Value::String(text)) => {
                    let text = normalise_spaces(text);
                    if text.contains(needle) {
                        return text;
                    }
                    format!("--- text of {css_selector:?} ---\n{text}")
                }
                Ok(_) => format!(
                    "no element matches {css_selector:?}\n--- page text ---\n{}",
                    self.page_text_for_report().await
                ),
                Err(e) => format!("cannot read {css_selector:?}: {e}"),
            };
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting for {needle:?}\n{shown}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Saves a PNG screenshot of the viewport to `path`, creating its parent directories.
    /// Meant for failure artifacts, e.g. under the workspace's `target/test-artifacts/`.
    pub async fn screenshot(&self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("cannot take a screenshot: {e}"));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        }
        std::fs::write(path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// Ends the WebDriver session, which closes Chromium, then kills chromedriver. Dropping
    /// the browser also kills everything, but without giving Chromium a chance to exit.
    pub async fn close(self) {
        // Client is a handle to the session task; closing a clone ends the session for
        // all of them.
        self.client
            .clone()
            .close()
            .await
            .unwrap_or_else(|e| panic!("cannot end the WebDriver session: {e}"));
    }

    async fn find(&self, css_selector: &str) -> fantoccini::elements::Element {
        match self.client.find(Locator::Css(css_selector)).await {
            Ok(element) => element,
            Err(e) => panic!(
                "no element matches {css_selector:?}: {e}\n--- page text ---\n{}",
                self.page_text_for_report().await
            ),
        }
    }

    async fn try_page_text(&self) -> Result<String, fantoccini::error::CmdError> {
        let v = self
            .client
            .execute(
                "return document.body ? document.body.innerText : '';",
                Vec::new(),
            )
            .await?;
        Ok(normalise_spaces(v.as_str().unwrap_or_default()))
    }

    /// The page text for a panic message, which must not itself panic.
    async fn page_text_for_report(&self) -> String {
        self.try_page_text()
            .await
            .unwrap_or_else(|e| format!("(cannot read the page text: {e})"))
    }
}

/// chromedriver, and the directory its Chromium writes to.
struct Driver {
    child: Child,
    dir: TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Chromium dies with chromedriver only thanks to the launcher's parent-death
        // signal; killing the whole tree does not rely on it. Crashpad handlers are not in
        // the tree (they daemonize) but name the directory on their command line, as does
        // everything else of this browser. Waiting until they are gone makes "dropped"
        // mean "not running", and the directory is only removed after that.
        kill_tree(self.child.id());
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = pids_mentioning(self.dir.path());
            if left.is_empty() || Instant::now() >= deadline {
                break;
            }
            for pid in left {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Writes the script chromedriver starts as "the browser": it runs Chromium with
/// `PR_SET_PDEATHSIG = SIGKILL`, because Chromium outlives a killed chromedriver, and
/// chromedriver is what dies when the test process is killed outright.
fn write_launcher(dir: &Path) -> PathBuf {
    let path = dir.join("chromium");
    std::fs::write(
        &path,
        format!("#!/bin/sh\nexec {SETPRIV} --pdeathsig KILL {CHROMIUM} \"$@\"\n"),
    )
    .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("cannot make {} executable: {e}", path.display()));
    path
}

/// Processes other than this one whose command line contains `dir`.
fn pids_mentioning(dir: &Path) -> Vec<u32> {
    let needle = dir.as_os_str().as_bytes();
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            // A zombie's command line is empty: it is dead already.
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

fn spawn_driver(port: u16, dir: &Path, log: &Path) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
    let mut cmd = Command::new(CHROMEDRIVER);
    cmd.arg(format!("--port={port}"))
        // Chromium keeps its crash database under $XDG_CONFIG_HOME whatever the profile
        // directory; here it stays in the browser's own directory and goes with it.
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .stdin(Stdio::null())
        .stdout(
            log_file
                .try_clone()
                .expect("cannot duplicate the log file handle"),
        )
        .stderr(log_file);
    // Tied to this process, so a test binary killed outright does not leave it behind.
    spawn_tied(cmd).unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"))
}

/// Why chromedriver did not start listening.
struct NotListening {
    /// It exited (typically: the port was taken), as opposed to hanging.
    exited: bool,
    message: String,
}

async fn wait_listening(driver: &mut Child, port: u16) -> Result<(), NotListening> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + DRIVER_READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = driver.try_wait() {
            return Err(NotListening {
                exited: true,
                message: format!("exited before listening: {status}"),
            });
        }
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr)).await
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(NotListening {
                exited: false,
                message: format!("did not listen within {DRIVER_READY_TIMEOUT:?}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn connect(
    port: u16,
    launcher: &Path,
    profile: &Path,
) -> Result<Client, fantoccini::error::NewSessionError> {
    let args = [
        // "new" is the full browser without a window; the old headless mode is a
        // different, separately maintained program.
        "--headless=new".to_string(),
        // Chromium refuses to run sandboxed as root, which is how CI runs tests.
        "--no-sandbox".to_string(),
        "--disable-gpu".to_string(),
        // Containers often give /dev/shm only 64 MB, where renderers crash.
        "--disable-dev-shm-usage".to_string(),
        // Keep a test's traffic to the loopback servers it started.
        "--disable-quic".to_string(),
        "--no-first-run".to_string(),
        "--disable-background-networking".to_string(),
        "--disable-component-update".to_string(),
        "--disable-sync".to_string(),
        "--window-size=1200,800".to_string(),
        // Its own profile, so browsers running at once share no state (cookies, locks).
        format!("--user-data-dir={}", profile.display()),
    ];
    let mut caps = Capabilities::new();
    caps.insert(
        "goog:chromeOptions".to_string(),
        json!({ "binary": launcher, "args": args }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
}

fn read_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_else(|e| format!("(cannot read {}: {e})", log.display()))
}

fn normalise_spaces(text: &str) -> String {
    text.replace('\u{a0}', " ")
}

/// JavaScript truthiness, for the values a script can return.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}
