//! `stt`: serve, send and benchmark encrypted transmissions.
//!
//! ```text
//! stt serve --udp 0.0.0.0:8080 --ws 0.0.0.0:8081 --seed-file node.seeds
//! stt send --udp 127.0.0.1:8080 --message hello --seed-file client.seeds
//! stt bench                      # UDP then WebSocket on loopback, a table in seconds
//! stt seeds --out node.seeds     # a fresh node seed and shared seed, mode 0600
//! stt serve --ws 0.0.0.0:8081 --seed-file node.seeds --audience eu-1   # also admit token clients
//! stt token --seed-file node.seeds --audience eu-1 --client-id 7     # a connect token for client 7
//! stt issuer-key --out issuer.key                                    # or a separate issuing key
//! stt send --ws ws://host:8081/ --token stt1.…                       # a client: no seed at all
//! ```
//!
//! Seeds come from a seed file (`--seed-file FILE`, readable by its owner
//! only, or `--seed-file -` for standard input), the environment
//! (`STT_NODE_SEED`, `STT_SHARED_SEED`, hex) or flags (which warn: `ps`
//! shows them to everyone); `serve` and `send` refuse to run without them.
//! Only `bench`, which talks to itself on loopback, makes up a pair.
//!
//! Text that came from the network (payloads, close reasons, errors) is
//! printed escaped, so a peer cannot drive the terminal or fake a line.

mod bench;
mod seeds;
mod token;
mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use stt::transport::udp::UdpConfig;
use stt::transport::ws::{tls, WsConfig};
use stt::{on_reactor, ConnectOptions, Node, NodeConfig, NodeEvent, NodeId};

pub(crate) use seeds::SeedArgs;

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
    /// Make a fresh random seed pair, in the seed-file format: printed, or
    /// written to a file only its owner may read (--out).
    Seeds(seeds::SeedsArgs),
    /// Issue a connect token: what a client that must not hold the shared
    /// seed (a game client, a browser) connects with. Printed as
    /// `stt1.<base64url>`.
    Token(token::TokenArgs),
    /// Make a fresh random issuing key for connect tokens, in a file only
    /// its owner may read: for a backend that should not hold the shared
    /// seed.
    IssuerKey(token::IssuerKeyArgs),
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
    /// Echo on this channel (0 reliable-ordered, 1 unreliable, 2
    /// unreliable-sequenced, 3 reliable-unordered), under congestion
    /// control, instead of as a plain datagram.
    #[arg(long, conflicts_with_all = ["sink", "echo_in_reactor"])]
    channel: Option<u8>,
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
    /// Print each message received (its first 256 bytes), escaped:
    /// control characters, line breaks and invalid UTF-8 show as `\n`,
    /// `\u{1b}`, `\xff`, ….
    #[arg(long)]
    print: bool,
    /// Admit clients with connect tokens naming this server NAME (repeat
    /// for several names). Tokens are issued under the key derived from
    /// the shared seed, or the one of --issuer-key-file.
    #[arg(long = "audience", value_name = "NAME")]
    audience: Vec<String>,
    #[command(flatten)]
    key: token::KeyArgs,
    #[command(flatten)]
    web: web::WebArgs,
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
    /// Open the session only with this node: its id, 64 hex digits (`stt
    /// serve` prints it at start). Another node fails the handshake before
    /// it learns who this one is.
    #[arg(long, value_name = "HEX", value_parser = parse_node_id)]
    peer_node: Option<NodeId>,
    /// Connect as a client with this connect token (`stt1.…`, `@FILE`, or
    /// `-` for standard input) instead of seeds.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    #[command(flatten)]
    seeds: SeedArgs,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    if let Some(("serve" | "send" | "bench" | "token", sub)) = matches.subcommand() {
        seeds::warn_if_on_command_line(sub);
    }
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Serve(a) => serve(a),
        Command::Send(a) => send(a),
        Command::Bench(a) => bench::run(a),
        Command::Seeds(a) => seeds::run(a),
        Command::Token(a) => token::run(a),
        Command::IssuerKey(a) => token::new_key(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Errors may carry a peer's words (a close reason, a server's
            // HTTP answer).
            eprintln!("error: {}", escape_text(&e.to_string()));
            ExitCode::from(1)
        }
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// `--peer-node`: a node id, 64 hex digits.
fn parse_node_id(s: &str) -> Result<NodeId, String> {
    let wrong = || "a node id is 64 hex digits (as `stt serve` prints it)".to_owned();
    let bytes = seeds::hex_decode("a node id", s).map_err(|_| wrong())?;
    Ok(NodeId(bytes.try_into().map_err(|_| wrong())?))
}

/// Peer-supplied bytes as text that cannot drive a terminal or start a
/// line: valid UTF-8 through `escape_debug` (control characters, line
/// breaks, bidirectional overrides become `\n`, `\u{1b}`, `\u{202e}`, …;
/// backslashes and quotes are escaped too, so the text reads back
/// unambiguously), other bytes as `\xNN`.
fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.extend(chunk.valid().escape_debug());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Text that may hold a peer's words (an error's, a close reason's) with
/// every character that `escape_debug` escapes escaped, except backslashes
/// and quotes: text already escaped (by the library) is not escaped twice.
fn escape_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\\' | '\'' | '"' => c.to_string(),
            c => c.escape_debug().to_string(),
        })
        .collect()
}

fn random_bytes(n: usize) -> Result<Vec<u8>, Error> {
    use ring::rand::SecureRandom;
    let mut v = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut v)
        .map_err(|_| "the system random generator failed")?;
    Ok(v)
}

fn serve(args: ServeArgs) -> Result<(), Error> {
    if args.udp.is_none() && args.ws.is_none() {
        return Err("nothing to serve: pass --udp ADDR and/or --ws ADDR".into());
    }
    let (node_seed, shared_seed) = args.key.seeds_for_server(args.web.demo_tokens)?;
    let mut config = NodeConfig::new(&node_seed, &shared_seed);
    let audience = web::audience(&args.web, &args.audience);
    config.tokens = token::server_config(&audience, &args.key)?;
    config.udp = args.udp.map(UdpConfig::bound_to);
    if let Some(r) = args.reactors {
        config.reactors = r;
    }
    let node = Node::start(config)?;
    println!("node {}", node.node_id());
    if !audience.is_empty() {
        println!("admitting connect tokens for {}", audience.join(", "));
    }
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
        let issue = match args.web.demo_tokens {
            true => Some(web::demo_issuer(
                args.key.load_for(&shared_seed)?,
                &audience,
            )),
            false => None,
        };
        ws.http = web::http_handler(&args.web, issue)?;
        let scheme = if ws.tls_server.is_some() { "wss" } else { "ws" };
        let bound = node.start_websocket_server(addr, ws)?;
        println!("WebSocket listening on {scheme}://{bound}/");
        if args.web.web.is_some() {
            let http = if scheme == "wss" { "https" } else { "http" };
            println!("web page at {http}://{bound}/");
        }
    }
    let events = node.events();
    let mut next_stats = std::time::Instant::now() + Duration::from_secs(args.stats_every.max(1));
    loop {
        match events.recv_timeout(Duration::from_millis(200)) {
            Ok(NodeEvent::Message(message)) => {
                if args.print {
                    let shown = &message.payload[..message.payload.len().min(256)];
                    println!(
                        "message on session {} ({} bytes): \"{}\"{}",
                        message.session,
                        message.payload.len(),
                        escape_bytes(shown),
                        if shown.len() < message.payload.len() {
                            "…"
                        } else {
                            ""
                        }
                    );
                }
                // A sink only counts (in the statistics).
                if !args.sink {
                    let _ = match args.channel {
                        Some(c) => node.send_channel(message.session, c, &message.payload),
                        None => node.send(message.session, &message.payload),
                    };
                }
                node.recycle(message.payload);
            }
            Ok(NodeEvent::SessionEstablished(info)) => match &info.client {
                Some(client) => println!(
                    "session {} from {} over {} (token client {})",
                    info.id, info.peer_addr, info.transport, client.client_id
                ),
                None => println!(
                    "session {} from {} over {}",
                    info.id, info.peer_addr, info.transport
                ),
            },
            Ok(NodeEvent::SessionClosed { session, reason }) => {
                println!(
                    "session {session} closed: {}",
                    escape_text(&reason.to_string())
                )
            }
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
    let token = args.token.as_deref().map(token::read_token).transpose()?;
    let mut config = match &token {
        Some(_) => NodeConfig::token_client(),
        None => {
            let (node_seed, shared_seed) = args.seeds.load()?;
            NodeConfig::client(&node_seed, &shared_seed)
        }
    };
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
    let mut options = ConnectOptions::new();
    if let Some(token) = token {
        options = options.with_token(token);
    }
    if let Some(peer) = args.peer_node {
        options = options.with_peer(peer);
    }
    let session = match (&args.udp, &args.ws) {
        (Some(target), _) => node.connect_udp_with(target.as_str(), &options)?,
        (None, Some(url)) => {
            if let Some(ca) = &args.ca {
                options = options.with_websocket(WsConfig {
                    tls_client: Some(tls::client_config_with_ca_file(ca)?),
                    ..WsConfig::default()
                });
            }
            node.connect_websocket_with(url, &options)?
        }
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
                if echo.payload != payload {
                    let shown = &echo.payload[..echo.payload.len().min(256)];
                    println!("echoed: \"{}\"", escape_bytes(shown));
                }
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
