//! The `stt` command-line program.
//!
//! The protocol core is in place; the `serve`, `send` and `bench` commands
//! arrive with the transports and the benchmark harness. Until then this
//! program prints its usage and says plainly which commands are not built yet.

use std::process::ExitCode;

const USAGE: &str = "\
stt — Seigr Toolset Transmissions: encrypted frames over UDP and WebSocket

USAGE:
    stt <COMMAND> [OPTIONS]

COMMANDS:
    serve    Run an echo/sink server on UDP and WebSocket        (not built yet)
    send     Send a message or a file to a server                (not built yet)
    bench    Open-loop benchmark with latency percentiles        (not built yet)

OPTIONS:
    -h, --help       Print this help
    -V, --version    Print the version

Until the transports land, `cargo run --release --example sealed_exchange`
runs a handshake and a sealed exchange between two in-memory sessions.
";

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        None | Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some("-V" | "--version") => {
            println!("stt {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some(cmd @ ("serve" | "send" | "bench")) => {
            eprintln!("error: `stt {cmd}` is not built yet in this version: it needs the UDP and WebSocket transports.\n");
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
        Some(other) => {
            eprintln!("error: unknown command `{other}`\n");
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
