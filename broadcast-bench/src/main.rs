//! `broadcast-e2e`: the end-to-end benchmark of issue 6.
//!
//! One invocation starts (or reuses, with `REDIS_URL`) a Redis, S Socket.IO
//! server processes, N websocket clients joined to R rooms, and one worker
//! process that broadcasts E events per room; it prints one JSON line with
//! delivered / lost / duplicated, deliveries per second, latency percentiles
//! and the CPU seconds of every process. `--variant compare` (the default)
//! interleaves runs of the framework and of plain socketioxide-redis, so the
//! ratio comes from one invocation on one machine state.
//!
//! Server and worker processes are this same binary, re-executed with the
//! internal `server` / `worker` roles.

mod args;
mod client;
mod conns;
mod orchestrate;
mod procs;
mod redis;
mod roles;
mod stats;

use std::process::ExitCode;

/// Errors of the bench: any error, with a message.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// The bench's result.
pub type Result<T> = std::result::Result<T, Error>;

/// Returns early with a formatted error.
#[macro_export]
macro_rules! bail {
    ($($t:tt)*) => { return Err(format!($($t)*).into()) };
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = match argv.first().map(String::as_str) {
        Some("server") => roles::server_main(&argv[1..]),
        Some("worker") => roles::worker_main(&argv[1..]),
        Some("-h" | "--help" | "help") => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Some("run") => orchestrate::main(&argv[1..]),
        Some("conns") => conns::main(&argv[1..]),
        _ => orchestrate::main(&argv),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broadcast-e2e: error: {e}");
            ExitCode::FAILURE
        }
    }
}
