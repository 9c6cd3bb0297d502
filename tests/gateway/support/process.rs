//! The real `conflux serve` binary in a child process, for tests whose
//! input might crash a gateway: a crash then fails the test instead of
//! taking the whole test binary down.

use std::io::{BufRead, BufReader};
use std::ops::Deref;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::client::Client;
use super::temp::TempDir;

/// A `conflux serve` child process and what it has written to stderr.
pub struct Serving {
    pub child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Every stderr line so far; a thread drains the pipe so it never fills.
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Serving {
    /// `conflux serve --config services.toml --listen 127.0.0.1:0 [args…]`
    /// in `dir`, with `RUST_LOG=rust_log`; waits (30 s at most) until it
    /// says where it serves, and panics with its stderr when it exits
    /// before that.
    pub async fn start(dir: &Path, rust_log: &str, args: &[&str]) -> Serving {
        Serving::start_with_env(dir, rust_log, args, &[]).await
    }

    /// As [`Serving::start`], with `env` set for the process too.
    pub async fn start_with_env(
        dir: &Path,
        rust_log: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Serving {
        let mut child = Command::new(env!("CARGO_BIN_EXE_conflux"))
            .args([
                "serve",
                "--config",
                "services.toml",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", rust_log)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start conflux serve");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                        sink.lock().expect("stderr lock").push(text);
                    }
                }
            }
        });
        let text =
            |stderr: &Arc<Mutex<Vec<String>>>| stderr.lock().expect("stderr lock").join("\n");
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let found = stderr
                .lock()
                .expect("stderr lock")
                .iter()
                .find_map(|line| served_address(line));
            if let Some(addr) = found {
                break addr;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "conflux serve exited ({status}) before serving:\n{}",
                    text(&stderr)
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "conflux serve did not report its address:\n{}",
                    text(&stderr)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Serving {
            child,
            addr,
            stderr,
        }
    }

    /// Its stderr so far, one line each.
    pub fn lines(&self) -> Vec<String> {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Whether the process is still running (it did not crash).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct ProcessGateway {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    serving: Serving,
    client: Client,
    _dir: TempDir,
}

impl ProcessGateway {
    /// Starts `conflux serve --listen 127.0.0.1:0` on `toml` (with
    /// `{NAME}` replaced by each upstream's URL) and `sdl`, and waits until
    /// it says where it serves.
    pub async fn start(toml: &str, sdl: &str, upstreams: &[(&str, &str)]) -> ProcessGateway {
        ProcessGateway::start_with_env(toml, sdl, upstreams, &[]).await
    }

    /// As [`ProcessGateway::start`], with `env` set for the process too.
    pub async fn start_with_env(
        toml: &str,
        sdl: &str,
        upstreams: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> ProcessGateway {
        let dir = TempDir::new();
        let mut config = toml.to_owned();
        for (name, url) in upstreams {
            config = config.replace(&format!("{{{name}}}"), url);
        }
        dir.write("services.toml", &config);
        dir.write("schema/schema.graphql", sdl);
        let serving = Serving::start_with_env(dir.path(), "info", &[], env).await;
        ProcessGateway {
            client: Client::new(format!("http://{}", serving.addr)),
            addr: serving.addr.clone(),
            serving,
            _dir: dir,
        }
    }

    /// Whether the process is still running (it did not crash).
    pub fn is_running(&mut self) -> bool {
        self.serving.is_running()
    }

    /// The process id, e.g. to read `/proc/<pid>/status`.
    pub fn pid(&self) -> u32 {
        self.serving.child.id()
    }
}

/// The `127.0.0.1:PORT` of the gateway's "conflux is serving" line (over
/// http or https).
pub fn served_address(line: &str) -> Option<String> {
    // Only the announcement: other lines may name other local URLs.
    if !line.contains("conflux is serving") {
        return None;
    }
    let start = line.find("://127.0.0.1:")? + "://".len();
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
