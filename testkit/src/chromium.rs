//! A headless Chromium for the tests of the web page: found on `PATH`, or installed once with apt-get (as
//! root, on Debian or Ubuntu) when missing; anything else fails with a message saying what to install.
//!
//! Chromium runs one-shot (`--dump-dom`, `--screenshot`) with a virtual time budget: the page's timers run
//! ahead on virtual time, which also waits for pending fetches, so the DOM dumped at the end is the DOM after
//! the page's first requests and polls, without a DevTools client.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The names Chromium goes by, in the order they are tried.
const NAMES: &[&str] = &["chromium", "chromium-browser", "google-chrome"];

/// How long one run may take in real time before it is killed: a page that never settles must fail the
/// test, not hang it.
const RUN_LIMIT: Duration = Duration::from_secs(60);

static CHROMIUM: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The Chromium program, installed on first call when missing. Panics with the reason when there is none
/// and it cannot be installed.
pub fn chromium() -> &'static Path {
    match CHROMIUM.get_or_init(|| find().map_or_else(install, Ok)) {
        Ok(path) => path,
        Err(why) => panic!("no Chromium for the page's tests: {why}"),
    }
}

fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| NAMES.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

fn install() -> Result<PathBuf, String> {
    let manual = "install one of chromium, chromium-browser or google-chrome \
                  (Debian/Ubuntu: apt-get install chromium)";
    if Command::new("apt-get").arg("--version").output().is_err() {
        return Err(format!("none on PATH and no apt-get here; {manual}"));
    }
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err(format!(
            "none on PATH and not root, so apt-get cannot install it; {manual}"
        ));
    }
    let started = Instant::now();
    eprintln!("chromium: not found; installing it with apt-get (once)");
    run_apt(&["update"])?;
    run_apt(&["install", "-y", "--no-install-recommends", "chromium"])?;
    eprintln!("chromium: installed in {:.0?}", started.elapsed());
    find().ok_or_else(|| format!("apt-get installed chromium but it is not on PATH; {manual}"))
}

fn run_apt(args: &[&str]) -> Result<(), String> {
    let out = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("apt-get {}: {e}", args[0]))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "apt-get {} failed ({}): {}",
        args[0],
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// How a page is loaded: the virtual time it gets, and the window size.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Virtual milliseconds the page runs for after loading (its timers and polls within them).
    pub virtual_ms: u32,
    pub width: u32,
    pub height: u32,
}

impl Default for Load {
    fn default() -> Self {
        Self {
            virtual_ms: 5_000,
            width: 1200,
            height: 900,
        }
    }
}

/// The page's DOM (as HTML) once its virtual time has run out.
pub fn dump_dom(url: &str, load: Load) -> String {
    let out = run(url, load, &["--dump-dom".to_owned()]);
    String::from_utf8(out.stdout).expect("the DOM is UTF-8")
}

/// A PNG screenshot of the page, written to `file`, once its virtual time has run out.
pub fn screenshot(url: &str, load: Load, file: &Path) {
    run(url, load, &[format!("--screenshot={}", file.display())]);
    assert!(
        file.is_file(),
        "chromium wrote no screenshot to {}",
        file.display()
    );
}

fn run(url: &str, load: Load, extra: &[String]) -> Output {
    // A profile of its own: runs in parallel, or by other users, never share one.
    let profile = tempfile::tempdir().expect("a profile folder");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            // As root (a container, CI) Chromium refuses to start with its sandbox.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--run-all-compositor-stages-before-draw",
            // No calls home: on a closed network they are refused many at a time and slow the load.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            // One locale whatever the machine's, so numbers format the same everywhere (1,234).
            "--lang=en-US",
        ])
        .env("LANG", "en_US.UTF-8")
        .env("LANGUAGE", "en_US")
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={}", load.virtual_ms))
        .arg(format!("--window-size={},{}", load.width, load.height))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    // Read both pipes while waiting, so a large DOM cannot fill one and stall the browser.
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            pipe.read_to_end(&mut buf).map(|_| buf).unwrap_or_default()
        })
    };
    let (stdout, stderr) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("chromium runs") {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium ran over {RUN_LIMIT:?} on {url}: {}",
                String::from_utf8_lossy(&stderr.join().unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    assert!(
        out.status.success(),
        "chromium failed on {url} ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
