//! Runs the demo shop services (users, orders, products, reviews) until Ctrl-C.
//!
//! ```text
//! cargo run --example shop -- [--latency-ms N] [--host 127.0.0.1] [--ports 7001,7002,7003,7004]
//! ```

mod services;

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use services::{ShopOptions, SERVICE_NAMES};

const USAGE: &str = "\
usage: shop [--latency-ms N] [--host IP] [--ports USERS,ORDERS,PRODUCTS,REVIEWS]

  --latency-ms N   delay every API answer by N milliseconds (default 0)
  --host IP        address to bind (default 127.0.0.1)
  --ports P,P,P,P  ports for users, orders, products, reviews
                   (default 7001,7002,7003,7004; 0 picks a free port)";

struct Args {
    host: IpAddr,
    ports: [u16; 4],
    latency: Duration,
}

/// Hand-rolled parsing keeps the example free of CLI dependencies.
/// Returns `Ok(None)` when help was requested.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut parsed = Args {
        host: IpAddr::from([127, 0, 0, 1]),
        ports: [7001, 7002, 7003, 7004],
        latency: Duration::ZERO,
    };
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--latency-ms" => {
                let raw = value()?;
                let ms: u64 = raw
                    .parse()
                    .map_err(|_| format!("invalid --latency-ms {raw:?}"))?;
                parsed.latency = Duration::from_millis(ms);
            }
            "--host" => {
                let raw = value()?;
                parsed.host = raw.parse().map_err(|_| format!("invalid --host {raw:?}"))?;
            }
            "--ports" => {
                let raw = value()?;
                let ports = raw
                    .split(',')
                    .map(|p| p.trim().parse::<u16>())
                    .collect::<Result<Vec<_>, _>>()
                    .ok()
                    .and_then(|ports| <[u16; 4]>::try_from(ports).ok())
                    .ok_or_else(|| {
                        format!("--ports needs four comma-separated ports, got {raw:?}")
                    })?;
                parsed.ports = ports;
            }
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(Some(parsed))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("error: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let opts = ShopOptions {
        latency: args.latency,
    };
    let addrs = match services::spawn(args.host, args.ports, opts).await {
        Ok(addrs) => addrs,
        Err(err) => {
            eprintln!("error: cannot start shop services: {err}");
            return ExitCode::FAILURE;
        }
    };
    for (name, addr) in SERVICE_NAMES.iter().zip(addrs) {
        println!("{name:<8} http://{addr}");
    }
    eprintln!(
        "shop services running (latency {:?}); press Ctrl-C to stop",
        args.latency
    );

    // The services run on their own tasks; main only waits for the signal.
    if let Err(err) = tokio::signal::ctrl_c().await {
        eprintln!("error: cannot listen for Ctrl-C: {err}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
