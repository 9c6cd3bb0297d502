//! The real `conflux serve` binary in a child process, for tests whose
//! input might crash a gateway: a crash then fails the test instead of
//! taking the whole test binary down.

use std::io::{BufRead, BufReader};
use std::ops::Deref;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::client::Client;
use super::temp::TempDir;

pub struct ProcessGateway {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    child: Child,
    client: Client,
    _dir: TempDir,
}

impl ProcessGateway {
    /// Starts `conflux serve --listen 127.0.0.1:0` on `toml` (with
    /// `{NAME}` replaced by each upstream's URL) and `sdl`, and waits until
    /// it says where it serves.
    pub fn start(toml: &str, sdl: &str, upstreams: &[(&str, &str)]) -> ProcessGateway {
        let dir = TempDir::new();
        let mut config = toml.to_owned();
        for (name, url) in upstreams {
            config = config.replace(&format!("{{{name}}}"), url);
        }
        dir.write("services.toml", &config);
        dir.write("schema/schema.graphql", sdl);
        let mut child = Command::new(env!("CARGO_BIN_EXE_conflux"))
            .args([
                "serve",
                "--config",
                "services.toml",
                "--listen",
                "127.0.0.1:0",
            ])
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start conflux serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let (found, address) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut found = Some(found);
            // Keeps draining after the address so the pipe never fills.
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = served_address(&line) {
                    if let Some(sender) = found.take() {
                        let _ = sender.send(addr);
                    }
                }
            }
        });
        let addr = match address.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("conflux serve did not report its address");
            }
        };
        ProcessGateway {
            child,
            client: Client::new(format!("http://{addr}")),
            addr,
            _dir: dir,
        }
    }

    /// Whether the process is still running (it did not crash).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// `127.0.0.1:PORT` from a log line mentioning `http://127.0.0.1:PORT`.
/// The `127.0.0.1:PORT` of the gateway's "conflux is serving" line.
pub fn served_address(line: &str) -> Option<String> {
    // Only the announcement: other lines may name other local URLs.
    if !line.contains("conflux is serving") {
        return None;
    }
    let start = line.find("http://127.0.0.1:")? + "http://".len();
    let rest = &line[start..];
    let port_start = "127.0.0.1:".len();
    let digits = rest[port_start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .count();
    (digits > 0).then(|| rest[..port_start + digits].to_owned())
}

impl Deref for ProcessGateway {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for ProcessGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
