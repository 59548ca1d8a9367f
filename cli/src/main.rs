//! `stt`: serve, send and benchmark encrypted transmissions.
//!
//! ```text
//! stt serve --udp 0.0.0.0:8080 --ws 0.0.0.0:8081 --seed-file node.seeds
//! stt send --udp 127.0.0.1:8080 --message hello --seed-file client.seeds
//! stt bench                      # UDP then WebSocket on loopback, a table in seconds
//! stt seeds > node.seeds         # a fresh node seed and shared seed
//! ```
//!
//! Seeds come from flags, the environment (`STT_NODE_SEED`,
//! `STT_SHARED_SEED`, hex) or a seed file; `serve` and `send` refuse to run
//! without them. Only `bench`, which talks to itself on loopback, makes up a
//! pair.

mod bench;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use stt::transport::udp::UdpConfig;
use stt::transport::ws::{tls, WsConfig};
use stt::{on_reactor, ConnectOptions, Node, NodeConfig, NodeEvent};

#[derive(Parser, Debug)]
#[command(
    name = "stt",
    version,
    about = "Seigr Toolset Transmissions: encrypted frames over UDP and WebSocket"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a server on UDP and/or WebSocket that echoes (or sinks) messages
    /// and prints statistics periodically.
    Serve(ServeArgs),
    /// Send a message or a file to a server and wait for its echo.
    Send(SendArgs),
    /// Benchmark: throughput and open-loop round-trip latency, on loopback
    /// or against a remote `stt serve`.
    Bench(bench::BenchArgs),
    /// Print a fresh random seed pair, in the seed-file format.
    Seeds,
}

/// Where the seeds come from.
#[derive(Args, Debug, Clone)]
struct SeedArgs {
    /// This node's identity seed, hex (at least 32 bytes).
    #[arg(long, env = "STT_NODE_SEED", hide_env_values = true)]
    node_seed: Option<String>,
    /// The network's shared seed, hex (at least 32 bytes, the same on every node).
    #[arg(long, env = "STT_SHARED_SEED", hide_env_values = true)]
    shared_seed: Option<String>,
    /// A file with `node_seed = HEX` and `shared_seed = HEX` lines (see `stt seeds`).
    #[arg(long)]
    seed_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// UDP address to listen on (e.g. 0.0.0.0:8080).
    #[arg(long)]
    udp: Option<SocketAddr>,
    /// WebSocket address to listen on (e.g. 0.0.0.0:8081).
    #[arg(long)]
    ws: Option<SocketAddr>,
    /// PEM certificate chain: serve wss:// instead of ws://.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Only count messages; do not echo them.
    #[arg(long)]
    sink: bool,
    /// Echo from the reactor threads (a reactor handler, `stt::on_reactor`)
    /// instead of an application thread: no thread hand-off on the way back.
    #[arg(long, conflicts_with = "sink")]
    echo_in_reactor: bool,
    /// Seconds between statistics lines (0: none).
    #[arg(long, default_value_t = 5)]
    stats_every: u64,
    /// Reactor threads (default: one per core).
    #[arg(long)]
    reactors: Option<usize>,
    #[command(flatten)]
    seeds: SeedArgs,
}

#[derive(Args, Debug)]
struct SendArgs {
    /// Server UDP address (host:port).
    #[arg(long, conflicts_with = "ws")]
    udp: Option<String>,
    /// Server WebSocket URL (ws://host:port/ or wss://…).
    #[arg(long)]
    ws: Option<String>,
    /// A text message to send.
    #[arg(long, conflicts_with = "file")]
    message: Option<String>,
    /// A file to send as one message (up to 16 MiB).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Trust this CA (PEM) for wss:// instead of the webpki roots.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Seconds to wait for the echo.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
    #[command(flatten)]
    seeds: SeedArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => serve(a),
        Command::Send(a) => send(a),
        Command::Bench(a) => bench::run(a),
        Command::Seeds => new_seed_file().map(|f| print!("{f}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn hex_decode(what: &str, s: &str) -> Result<Vec<u8>, Error> {
    let s = s.trim();
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{what} must be hex (e.g. from `stt seeds`)").into());
    }
    Ok((0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
        .collect())
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_bytes(n: usize) -> Result<Vec<u8>, Error> {
    use ring::rand::SecureRandom;
    let mut v = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut v)
        .map_err(|_| "the system random generator failed")?;
    Ok(v)
}

fn new_seed_file() -> Result<String, Error> {
    Ok(format!(
        "# stt seeds: keep this file secret. Give every node of a network the same\n# shared_seed and its own node_seed.\nnode_seed = {}\nshared_seed = {}\n",
        hex_encode(&random_bytes(32)?),
        hex_encode(&random_bytes(32)?)
    ))
}

impl SeedArgs {
    /// The seeds, from flags/environment first, then the seed file.
    fn load(&self) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let mut node = self.node_seed.clone();
        let mut shared = self.shared_seed.clone();
        if let Some(path) = &self.seed_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            for line in text.lines() {
                let line = line.trim();
                if let Some((k, v)) = line.split_once('=') {
                    match k.trim() {
                        "node_seed" if node.is_none() => node = Some(v.trim().to_owned()),
                        "shared_seed" if shared.is_none() => shared = Some(v.trim().to_owned()),
                        _ => {}
                    }
                }
            }
        }
        let missing = |which: &str, flag: &str, env: &str| -> Error {
            format!("no {which}: pass --{flag} HEX, set {env}, or --seed-file FILE (make one with `stt seeds`)").into()
        };
        let node = node.ok_or_else(|| missing("node seed", "node-seed", "STT_NODE_SEED"))?;
        let shared =
            shared.ok_or_else(|| missing("shared seed", "shared-seed", "STT_SHARED_SEED"))?;
        Ok((
            hex_decode("node_seed", &node)?,
            hex_decode("shared_seed", &shared)?,
        ))
    }
}

fn serve(args: ServeArgs) -> Result<(), Error> {
    if args.udp.is_none() && args.ws.is_none() {
        return Err("nothing to serve: pass --udp ADDR and/or --ws ADDR".into());
    }
    let (node_seed, shared_seed) = args.seeds.load()?;
    let mut config = NodeConfig::new(&node_seed, &shared_seed);
    config.udp = args.udp.map(UdpConfig::bound_to);
    if let Some(r) = args.reactors {
        config.reactors = r;
    }
    let node = Node::start(config)?;
    println!("node {}", node.node_id());
    if args.echo_in_reactor {
        node.set_handler(on_reactor(|message, replies| {
            let _ = replies.send(message.session, &message.payload);
            replies.recycle(message.payload);
        }))?;
        println!("echoing from the reactors");
    }
    if let Some(addr) = node.udp_local_addr() {
        println!("UDP listening on {addr}");
    }
    if let Some(addr) = args.ws {
        let mut ws = WsConfig::default();
        if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
            ws.tls_server = Some(tls::server_config_from_pem_files(cert, key)?);
        }
        let scheme = if ws.tls_server.is_some() { "wss" } else { "ws" };
        let bound = node.start_websocket_server(addr, ws)?;
        println!("WebSocket listening on {scheme}://{bound}/");
    }
    let events = node.events();
    let mut next_stats = std::time::Instant::now() + Duration::from_secs(args.stats_every.max(1));
    loop {
        match events.recv_timeout(Duration::from_millis(200)) {
            Ok(NodeEvent::Message(message)) if !args.sink => {
                let _ = node.send(message.session, &message.payload);
                node.recycle(message.payload);
            }
            Ok(NodeEvent::SessionEstablished(info)) => {
                println!(
                    "session {} from {} over {}",
                    info.id, info.peer_addr, info.transport
                )
            }
            Ok(NodeEvent::SessionClosed { session, reason }) => {
                println!("session {session} closed: {reason}")
            }
            // A sink: counted in the statistics, the buffer given back.
            Ok(NodeEvent::Message(message)) => node.recycle(message.payload),
            _ => {}
        }
        if args.stats_every > 0 && std::time::Instant::now() >= next_stats {
            next_stats += Duration::from_secs(args.stats_every);
            println!("{}", serde_json::to_string(&node.stats())?);
        }
    }
}

fn send(args: SendArgs) -> Result<(), Error> {
    let payload = match (&args.message, &args.file) {
        (Some(m), _) => m.clone().into_bytes(),
        (None, Some(f)) => std::fs::read(f).map_err(|e| format!("reading {}: {e}", f.display()))?,
        (None, None) => return Err("nothing to send: pass --message TEXT or --file FILE".into()),
    };
    let (node_seed, shared_seed) = args.seeds.load()?;
    let mut config = NodeConfig::client(&node_seed, &shared_seed);
    config.reactors = 1;
    config.udp = match &args.udp {
        Some(target) => {
            let peer = std::net::ToSocketAddrs::to_socket_addrs(target.as_str())
                .map_err(|e| format!("resolving {target}: {e}"))?
                .next()
                .ok_or_else(|| format!("{target} resolves to no address"))?;
            let local: SocketAddr = if peer.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            }
            .parse()?;
            Some(UdpConfig::bound_to(local))
        }
        None => None,
    };
    let node = Node::start(config)?;
    let session = match (&args.udp, &args.ws) {
        (Some(target), _) => node.connect_udp(target.as_str())?,
        (None, Some(url)) => match &args.ca {
            Some(ca) => node.connect_websocket_with(
                url,
                &ConnectOptions::new().with_websocket(WsConfig {
                    tls_client: Some(tls::client_config_with_ca_file(ca)?),
                    ..WsConfig::default()
                }),
            )?,
            None => node.connect_websocket(url)?,
        },
        (None, None) => return Err("no server: pass --udp HOST:PORT or --ws URL".into()),
    };
    println!(
        "session {} with node {} over {}",
        session.id(),
        session.peer_node(),
        session.info().transport
    );
    let started = std::time::Instant::now();
    session.send(&payload)?;
    let events = node.events();
    let deadline = started + Duration::from_secs(args.timeout);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match events.recv_timeout(left) {
            Ok(NodeEvent::Message(echo)) => {
                let same = if echo.payload == payload {
                    "identical"
                } else {
                    "DIFFERENT"
                };
                println!(
                    "echo: {} bytes, {same}, round trip {:?}",
                    echo.payload.len(),
                    started.elapsed()
                );
                return Ok(());
            }
            Ok(_) => continue,
            Err(_) => {
                println!(
                    "sent {} bytes; no echo within {}s (a sink server, or lost)",
                    payload.len(),
                    args.timeout
                );
                return Ok(());
            }
        }
    }
}
