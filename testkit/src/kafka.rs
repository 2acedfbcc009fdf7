//! A Kafka-compatible broker (tansu) owned by one test, which it can kill and start again.
//!
//! [`KafkaBroker::start`] runs tansu with its memory storage engine: fast, but a restart starts empty (topics,
//! records and committed offsets are gone). [`KafkaBroker::start_durable`] keeps them in an SQLite file of its
//! folder, so a restart, even after SIGKILL, finds them as a restarted Kafka broker would.
//! [`KafkaBroker::start_sasl`] requires SASL/SCRAM of every client; [`KafkaBroker::start_tls`] TLS. The program is
//! `TOPK_TANSU`, else `tansu` on `PATH`, else the build that `scripts/lib.sh`'s `ensure_tansu` caches (under
//! `$XDG_CACHE_HOME/topk`, by default `~/.cache/topk`), built with the features `dynostore` (memory storage)
//! and `libsql` (SQLite storage).

use crate::process::{free_port, wait_port};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Where `ensure_tansu` puts its build under the cache folder: kept in step with `scripts/lib.sh`
/// (`TANSU_VERSION`, `TANSU_FEATURES`).
const CACHED_TANSU: &str = "topk/tansu-0.6.0-dynostore-libsql/bin/tansu";

/// The tansu program, or a panic that says how to get one.
pub fn tansu_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TOPK_TANSU") {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "TOPK_TANSU={} is not a file", bin.display());
        return bin;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = std::env::split_paths(&path).map(|d| d.join("tansu"));
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join(CACHED_TANSU));
    on_path.chain(cache).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "tansu (the Kafka broker of the tests) is not installed: run \
             `source scripts/lib.sh && ensure_tansu` once (it builds it into ~/.cache/topk, about 35 \
             minutes on 2 cores), or set TOPK_TANSU to a tansu binary"
        )
    })
}

/// A tansu broker on a free loopback port, with its log (and its data, when durable) in a folder of its own;
/// killed when dropped.
#[derive(Debug)]
pub struct KafkaBroker {
    /// Where tansu listens (plain Kafka).
    port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// tansu's `--storage-engine`: memory, or an SQLite file in `dir` (a path relative to tansu's folder).
    storage: &'static str,
    child: Option<Child>,
    /// Whether every client must authenticate (SASL/SCRAM), from the broker's next start on.
    authentication: bool,
    /// With TLS: the port clients are told (socat terminates TLS there and forwards to `port`), its
    /// certificate and key, and the socat process.
    tls: Option<TlsFront>,
}

#[derive(Debug)]
struct TlsFront {
    port: u16,
    cert: PathBuf,
    key: PathBuf,
    child: Option<Child>,
}

impl KafkaBroker {
    /// Starts a broker with memory storage on a free port.
    pub fn start() -> Self {
        Self::start_with("memory://tansu/", None)
    }

    /// Starts a broker that keeps its topics, records and committed offsets on disk (SQLite, synchronous
    /// `normal` in WAL mode: what it has answered survives the process being killed).
    pub fn start_durable() -> Self {
        Self::start_with("sqlite://tansu.db", None)
    }

    /// Starts a broker (memory storage) that clients reach over TLS only, with `certs`' server certificate:
    /// tansu 0.6 serves no TLS itself, so socat terminates it in front and tansu advertises socat's port
    /// (clients connect there after their first metadata request). [`Self::bootstrap`] is the TLS address.
    pub fn start_tls(certs: &crate::TlsCerts) -> Self {
        let front = TlsFront {
            port: free_port(),
            cert: certs.cert.clone(),
            key: certs.key.clone(),
            child: None,
        };
        Self::start_with("memory://tansu/", Some(front))
    }

    /// Starts a durable broker that holds `topics` (name, partitions) and knows `users` (name, password, for
    /// SCRAM-SHA-512), then requires every client to authenticate as one of them (SASL). tansu's own tools
    /// do not authenticate, so the topics and users are made first, on the broker started without
    /// authentication, which then restarts requiring it; [`Self::create_topic`] no longer works.
    pub fn start_sasl(users: &[(&str, &str)], topics: &[(&str, u32)]) -> Self {
        let mut broker = Self::start_durable();
        for (topic, partitions) in topics {
            broker.create_topic(topic, *partitions);
        }
        for (name, password) in users {
            broker.tansu(&["user", "create", name, password, "--mechanism", "scram512"]);
        }
        broker.authentication = true;
        broker.restart();
        broker
    }

    fn start_with(storage: &'static str, tls: Option<TlsFront>) -> Self {
        let dir = crate::process::temp_dir("topk-tansu-");
        let mut broker = Self {
            port: free_port(),
            bin: tansu_bin(),
            dir,
            storage,
            child: None,
            authentication: false,
            tls,
        };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised_port());
        // Appended to, so that a restarted broker's log follows the killed one's.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("tansu log file");
        let child = Command::new(&self.bin)
            .arg("broker")
            .args(["--listener-url", &url])
            // Clients connect to the advertised address after their first metadata request.
            .args(["--advertised-listener-url", &advertised])
            .args(["--storage-engine", self.storage])
            .args(self.authentication.then_some("--authentication"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("tansu log file"))
            .stderr(log.try_clone().expect("tansu log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        self.child = Some(child);
        wait_port(self.port, "tansu");
        let plain = self.port;
        if let Some(front) = self.tls.as_mut() {
            if front.child.is_none() {
                let socat = crate::process::which("socat");
                let listen = format!(
                    "OPENSSL-LISTEN:{},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={},key={}",
                    front.port,
                    front.cert.display(),
                    front.key.display()
                );
                let child = Command::new(socat)
                    .args([listen, format!("TCP:127.0.0.1:{plain}")])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("start socat");
                front.child = Some(child);
                wait_port(front.port, "socat");
            }
        }
    }

    /// The port clients are told: the TLS one when there is one.
    fn advertised_port(&self) -> u16 {
        self.tls.as_ref().map_or(self.port, |t| t.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("tansu.log")
    }

    /// What the broker has logged so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The bootstrap address clients connect to: `127.0.0.1:<port>` (TLS with [`Self::start_tls`]).
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.advertised_port())
    }

    /// Creates `topic` with `partitions` partitions (tansu creates no topic by itself).
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        self.tansu(&[
            "topic",
            "create",
            topic,
            "--partitions",
            &partitions.to_string(),
        ]);
    }

    /// Runs one of tansu's own tools against the broker (plain port), asserting it succeeded.
    fn tansu(&self, args: &[&str]) {
        let out = Command::new(&self.bin)
            .args(args)
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .output()
            .unwrap_or_else(|e| panic!("run tansu {}: {e}", args.join(" ")));
        assert!(
            out.status.success(),
            "tansu {}: {}{}\nbroker log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// Kills the broker (SIGKILL): with memory storage, everything it held is lost; a durable one keeps what
    /// it had answered.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the broker and starts it again on the same port: empty with memory storage, as it was when
    /// durable.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        self.kill();
        if let Some(mut c) = self.tls.as_mut().and_then(|t| t.child.take()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
