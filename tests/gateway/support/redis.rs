//! A real `redis-server` on a free loopback port, for the tests of the
//! Redis backends: started as a child process, killed on drop.
//!
//! `redis-server` must be on PATH: `tests/run` (README "Run the tests")
//! installs or fetches it. When it is missing the test FAILS with a message
//! saying so: a skipped test would hide an untested backend.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::temp::TempDir;

pub struct RedisServer {
    /// The loopback port it listens on.
    pub port: u16,
    child: Option<Child>,
    _dir: TempDir,
}

impl RedisServer {
    /// Starts `redis-server` without persistence on a free port and waits
    /// until it answers `PING`.
    pub fn start() -> RedisServer {
        let mut last_problem = String::new();
        // A free port can be taken between choosing it and redis binding
        // it: try a few.
        for _ in 0..5 {
            match Self::try_start() {
                Ok(server) => return server,
                Err(problem) => last_problem = problem,
            }
        }
        panic!("could not start redis-server: {last_problem}");
    }

    fn try_start() -> Result<RedisServer, String> {
        let port = free_port();
        let dir = TempDir::new();
        let spawned = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
            ])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
                "`redis-server` is not on PATH, so the Redis-backed tests (response cache, \
                 persisted queries, rate limit) cannot run. Run the tests with `tests/run`, \
                 which installs or fetches it, or install it (Debian/Ubuntu: \
                 `apt-get install redis-server`; macOS: `brew install redis`)."
            ),
            Err(err) => panic!("cannot run `redis-server`: {err}"),
        };
        let mut server = RedisServer {
            port,
            child: Some(child),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if server.answers_ping() {
                return Ok(server);
            }
            if let Some(child) = server.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    server.child = None;
                    return Err(format!("redis-server on port {port} exited with {status}"));
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "redis-server on port {port} did not answer PING within 10 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether the server answers `PING` with `+PONG` right now.
    pub fn answers_ping(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut answer = [0u8; 7];
        stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
    }

    /// Kills the server now (SIGKILL) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nothing listens on (bound, then released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}
