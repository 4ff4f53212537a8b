//! Test support: nats-server processes on loopback ports, each with its own data
//! directory, stopped by PID when dropped.
//!
//! Tests that need a server have `nats_server` in their names and the attribute
//! `#[cfg_attr(no_nats_server, ignore = "…")]`. The crate's build script sets
//! `cfg(no_nats_server)` when it finds no `nats-server` binary (set `NATS_SERVER` to its
//! path, or put it on `PATH`), so that those tests are reported as ignored rather than
//! passed; under CI (`CI=true`) it never does, and the tests fail without a server.

#![allow(dead_code, unreachable_pub)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod find;
pub use find::binary;

/// The binary the test `name` needs.
///
/// # Panics
/// When there is none: the test runs only when the build script found one, under CI
/// (`CI=true`), or when asked for with `--ignored`.
pub fn server_binary(name: &str) -> PathBuf {
    binary().unwrap_or_else(|| {
        panic!(
            "{name}: no nats-server binary found; install nats-server or set \
             NATS_SERVER=/path/to/nats-server"
        )
    })
}

/// A free TCP port on 127.0.0.1, below Linux's ephemeral range (32768 and up).
///
/// A port the kernel hands out for `bind(0)` comes from the ephemeral range, where any
/// outgoing connection (a client of another server, say) may take it again before our
/// server binds it; a server restarted on its old port has the same risk. Ports below
/// that range are only ever taken on purpose, and the counter keeps this process from
/// choosing one twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 1_000) * 12;
    for _ in 0..12_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (base + n) % 12_000 + 20_000;
        if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free loopback port in 20000..32000")
}

/// One nats-server process with JetStream.
#[derive(Debug)]
pub struct Server {
    binary: PathBuf,
    pub name: String,
    pub port: u16,
    config: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Server {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Starts the process and waits until it accepts connections.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("server log file");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{} exited with {status}; its log:\n{}",
                    self.name,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not start listening",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process gracefully (SIGTERM), waiting for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGSTOP.
    pub fn pause(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, "STOP");
        }
    }

    /// SIGCONT.
    pub fn resume(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, "CONT");
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A paused process would not die of SIGTERM; SIGKILL works in any state.
        self.kill();
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

fn write_config(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write server config");
}

/// A single JetStream server on a loopback port, with `max_payload` raised to 8 MiB.
#[derive(Debug)]
pub struct Single {
    pub server: Server,
    _dir: tempfile::TempDir,
}

impl Single {
    pub fn start(binary: PathBuf) -> Single {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let config = dir.path().join("server.conf");
        write_config(
            &config,
            &format!(
                "listen: 127.0.0.1:{port}\nmax_payload: 8MB\nhttp: 0\njetstream {{\n  store_dir: {:?}\n  max_memory_store: 64MB\n  max_file_store: 4GB\n}}\n",
                dir.path().join("js")
            ),
        );
        let mut server = Server {
            binary,
            name: "nats-single".into(),
            port,
            config,
            child: None,
            log: dir.path().join("server.log"),
        };
        server.start();
        Single { server, _dir: dir }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }
}

/// A three-node JetStream cluster on loopback ports, each node with its own data directory.
#[derive(Debug)]
pub struct Cluster {
    pub nodes: Vec<Server>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start(binary: PathBuf) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes = route_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut nodes = Vec::new();
        for i in 0..3 {
            let name = format!("n{}", i + 1);
            let config = dir.path().join(format!("{name}.conf"));
            write_config(
                &config,
                &format!(
                    "server_name: {name}\nlisten: 127.0.0.1:{}\nmax_payload: 8MB\njetstream {{\n  store_dir: {:?}\n  max_memory_store: 64MB\n  max_file_store: 4GB\n}}\ncluster {{\n  name: flume\n  listen: 127.0.0.1:{}\n  routes: [{routes}]\n}}\n",
                    client_ports[i],
                    dir.path().join(&name),
                    route_ports[i]
                ),
            );
            nodes.push(Server {
                binary: binary.clone(),
                name: name.clone(),
                port: client_ports[i],
                config,
                child: None,
                log: dir.path().join(format!("{name}.log")),
            });
        }
        for node in &mut nodes {
            node.start();
        }
        Cluster { nodes, _dir: dir }
    }

    /// Every node's URL, comma-separated (what `NatsLog::connect` takes).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.url())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn node_by_name(&mut self, name: &str) -> Option<&mut Server> {
        self.nodes.iter_mut().find(|n| n.name == name)
    }
}
