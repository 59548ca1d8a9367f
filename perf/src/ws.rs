//! Workload `ws`: one WebSocket connection over loopback, 64-byte and 64 KiB
//! messages, four contenders:
//!
//! - stt over WebSocket (sealed): two [`Node`]s with one reactor each and no
//!   UDP socket (`NodeConfig::websocket_only`: the WebSocket transport
//!   alone, nothing else on the reactors' poll). The application sends with
//!   [`Node::send`] (which waits while the reactor's command queue is full)
//!   and receives [`NodeEvent::Message`] from [`Node::events`].
//! - tokio-tungstenite over plain TCP (unsealed) and over rustls (`wss://`,
//!   sealed: tokio-rustls on ring, a self-signed certificate from rcgen that
//!   the client trusts explicitly): the sender `feed`s messages into the
//!   sink (tungstenite writes to the stream whenever its write buffer
//!   fills) and flushes at the end.
//! - fastwebsockets over plain TCP (unsealed): [`WebSocket::after_handshake`]
//!   on the tokio `TcpStream` of each end, after a minimal HTTP upgrade done
//!   here; the sender writes each frame to the socket (fastwebsockets has no
//!   write buffer).
//!
//! The three tokio peers run a server task and a client task on one
//! multi-threaded tokio runtime (one worker per core), `TCP_NODELAY` on both
//! ends, as stt sets it, and share the measuring code: [`Throughput`] and
//! [`PingPong`] over the [`WsEnd`] each library implements.
//!
//! Two measurements per contender and size:
//!
//! - throughput: the client sends as fast as its API allows for `seconds`;
//!   the figure is what the server's application got, messages per second
//!   between the first and the last arrival, and the goodput that makes.
//!   "Cores busy" is the process's CPU time (getrusage, every thread) over
//!   the wall time from the first send to the last arrival.
//! - latency: ping-pong with one message in flight, the server's
//!   application echoing each message back; `pings` round trips (after a
//!   warm-up) recorded in an HDR histogram.

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket};
use futures_util::{SinkExt, StreamExt};
use stt::frame::SessionId;
use stt::node::{Message as SttMessage, Node, NodeConfig, NodeEvent};
use stt::transport::ws::WsConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client;
use tokio_rustls::rustls::{
    self,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName},
};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::common::{
    cpu_time, histogram, machine, median, min_max, next_event, ok, paired, ratio_cell, send_for,
    stt_ping_pong, stt_ping_pong_inline, Contender, Latency, Sample, Tally, ECHO_TIMEOUT, WARMUP,
};
use crate::quic::{runtime, BoxError};
use crate::Args;

/// The message sizes measured.
const SIZES: [usize; 2] = [64, 64 << 10];
/// After the sender stops, how long without an arrival before the receiver
/// gives up on what is missing.
const IDLE: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------- stt ----

struct SttPair {
    server: Arc<Node>,
    client: Node,
    session: SessionId,
}

impl SttPair {
    /// Two nodes, one reactor each, WebSocket only; the client connected.
    fn start() -> Option<SttPair> {
        const SHARED: &[u8] = b"stt-perf benchmark network shared seed";
        let config = |seed: &[u8]| NodeConfig::websocket_only(seed, SHARED).with_reactors(1);
        let server = ok(
            Node::start(config(b"stt-perf ws benchmark server node seed")),
            "starting the stt server",
        )?;
        let client = ok(
            Node::start(config(b"stt-perf ws benchmark client node seed").with_server_mode(false)),
            "starting the stt client",
        )?;
        let addr = ok(
            server.start_websocket_server(
                "127.0.0.1:0".parse().expect("literal"),
                WsConfig::default(),
            ),
            "starting the stt WebSocket server",
        )?;
        let session = ok(
            client.connect_websocket(&format!("ws://{addr}/")),
            "connecting over WebSocket",
        )?
        .id();
        Some(SttPair {
            server: Arc::new(server),
            client,
            session,
        })
    }

    fn debug(&self) {
        if std::env::var_os("STT_PERF_DEBUG").is_some() {
            eprintln!(
                "  client {:?}\n  server {:?}",
                self.client.websocket_stats(),
                self.server.websocket_stats()
            );
        }
    }

    fn stop(self) {
        self.client.stop();
        self.server.stop();
    }
}

fn stt_throughput(seconds: f64, size: usize) -> Option<Sample> {
    let pair = SttPair::start()?;
    let events = pair.server.events();
    let server = pair.server.clone();
    // u64::MAX until the sender is done; then how many it sent.
    let sent_total = Arc::new(AtomicU64::new(u64::MAX));
    let sent_total2 = sent_total.clone();
    let receiver = std::thread::spawn(move || {
        let mut tally = Tally::new();
        let started = Instant::now();
        loop {
            match next_event(&events, Duration::from_millis(5)) {
                Ok(NodeEvent::Message(SttMessage { payload, .. })) => {
                    tally.hit();
                    server.recycle(payload);
                }
                Ok(_) => {}
                Err(e) if e.is_disconnected() => break,
                Err(_) => {}
            }
            let total = sent_total2.load(Ordering::Acquire);
            if total != u64::MAX
                && (tally.count >= total || tally.last.unwrap_or(started).elapsed() > IDLE)
            {
                break;
            }
        }
        tally
    });
    let payload = vec![0xABu8; size];
    let (sent, cpu0, t0) = send_for(seconds, || pair.client.send(pair.session, &payload).is_ok());
    sent_total.store(sent, Ordering::Release);
    let tally = receiver.join().ok()?;
    let wall = t0.elapsed().as_secs_f64();
    let sample = Sample::measured(&tally, cpu0, wall, sent);
    pair.debug();
    pair.stop();
    Some(sample)
}

fn stt_latency(round_trips: usize, size: usize, in_reactor: bool) -> Option<Latency> {
    let pair = SttPair::start()?;
    let result = if in_reactor {
        stt_ping_pong_inline(&pair.server, &pair.client, pair.session, size, round_trips)
    } else {
        stt_ping_pong(&pair.server, &pair.client, pair.session, size, round_trips)
    };
    pair.debug();
    pair.stop();
    result
}

// ------------------------------------------------------- tokio peers ----

/// The peers on tokio, each measured by the same [`Throughput`] and
/// [`PingPong`] code through [`WsEnd`].
#[derive(Clone, Copy)]
enum Peer {
    /// tokio-tungstenite over plain TCP (`ws://`).
    Tungstenite,
    /// fastwebsockets over plain TCP.
    FastWebSockets,
    /// tokio-tungstenite over tokio-rustls (`wss://`).
    TungsteniteRustls,
}

impl Peer {
    fn name(self) -> &'static str {
        CONTENDERS[match self {
            Peer::Tungstenite => TUNGSTENITE,
            Peer::FastWebSockets => FASTWEBSOCKETS,
            Peer::TungsteniteRustls => TUNGSTENITE_RUSTLS,
        }]
    }
}

/// One end of a WebSocket connection, as [`Throughput`] and [`PingPong`]
/// drive it: tokio-tungstenite over any stream, and fastwebsockets.
trait WsEnd: Send + 'static {
    /// Hands one binary message to the library, as fast as its API allows:
    /// tokio-tungstenite `feed`s it into the sink (written to the stream
    /// whenever tungstenite's write buffer fills); fastwebsockets writes the
    /// frame to the socket at once (it has no write buffer).
    fn feed(&mut self, payload: &Bytes) -> impl Future<Output = Result<(), BoxError>> + Send;
    /// Sends one binary message and flushes it out.
    fn send(&mut self, payload: &Bytes) -> impl Future<Output = Result<(), BoxError>> + Send;
    /// The length of the next binary message (other messages are skipped),
    /// or `None` once the peer has closed.
    fn recv(&mut self) -> impl Future<Output = Result<Option<usize>, BoxError>> + Send;
    /// Sends the next binary message back as it came; `false` once the peer
    /// has closed.
    fn echo(&mut self) -> impl Future<Output = Result<bool, BoxError>> + Send;
    /// Flushes what is left and closes.
    fn finish(self) -> impl Future<Output = Result<(), BoxError>> + Send;
}

impl<S> WsEnd for WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn feed(&mut self, payload: &Bytes) -> Result<(), BoxError> {
        Ok(SinkExt::feed(self, Message::Binary(payload.clone())).await?)
    }

    async fn send(&mut self, payload: &Bytes) -> Result<(), BoxError> {
        Ok(SinkExt::send(self, Message::Binary(payload.clone())).await?)
    }

    async fn recv(&mut self) -> Result<Option<usize>, BoxError> {
        while let Some(msg) = self.next().await {
            match msg? {
                Message::Binary(p) => return Ok(Some(p.len())),
                Message::Close(_) => break,
                _ => {}
            }
        }
        Ok(None)
    }

    async fn echo(&mut self) -> Result<bool, BoxError> {
        while let Some(msg) = self.next().await {
            match msg? {
                m @ Message::Binary(_) => {
                    SinkExt::send(self, m).await?;
                    return Ok(true);
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        Ok(false)
    }

    async fn finish(mut self) -> Result<(), BoxError> {
        Ok(self.close(None).await?)
    }
}

impl WsEnd for WebSocket<TcpStream> {
    async fn feed(&mut self, payload: &Bytes) -> Result<(), BoxError> {
        // A borrowed payload: the client copies it as it masks it, as
        // tungstenite does when it writes the frame into its buffer.
        Ok(self
            .write_frame(Frame::binary(Payload::Borrowed(payload)))
            .await?)
    }

    async fn send(&mut self, payload: &Bytes) -> Result<(), BoxError> {
        self.feed(payload).await?;
        Ok(self.flush().await?)
    }

    async fn recv(&mut self) -> Result<Option<usize>, BoxError> {
        loop {
            // Pings are answered and closes confirmed inside `read_frame`
            // (auto-pong and auto-close, the defaults).
            let frame = self.read_frame().await?;
            match frame.opcode {
                OpCode::Binary => return Ok(Some(frame.payload.len())),
                OpCode::Close => return Ok(None),
                _ => {}
            }
        }
    }

    async fn echo(&mut self) -> Result<bool, BoxError> {
        loop {
            let frame = self.read_frame().await?;
            match frame.opcode {
                OpCode::Binary => {
                    self.write_frame(Frame::binary(frame.payload)).await?;
                    return Ok(true);
                }
                OpCode::Close => return Ok(false),
                _ => {}
            }
        }
    }

    async fn finish(mut self) -> Result<(), BoxError> {
        self.write_frame(Frame::close(1000, b"")).await?;
        // Wait for the peer's close in reply, so that its automatic answer
        // does not hit a socket already gone.
        while self.read_frame().await?.opcode != OpCode::Close {}
        Ok(())
    }
}

/// What is measured on a connected pair of [`WsEnd`]s: [`Throughput`] or
/// [`PingPong`].
trait Measurement {
    type Output;
    /// Runs on the tokio runtime: the server and the client each in a task
    /// of their own.
    async fn run<S: WsEnd, C: WsEnd>(self, server: S, client: C) -> Result<Self::Output, BoxError>;
}

/// The client sends as fast as [`WsEnd::feed`] allows for `seconds`, then
/// closes; the server counts what it receives.
struct Throughput {
    seconds: f64,
    size: usize,
}

impl Measurement for Throughput {
    type Output = Sample;

    async fn run<S: WsEnd, C: WsEnd>(
        self,
        mut server: S,
        mut client: C,
    ) -> Result<Sample, BoxError> {
        let Throughput { seconds, size } = self;
        let server = tokio::spawn(async move {
            let mut tally = Tally::new();
            while server.recv().await?.is_some() {
                tally.hit();
            }
            Ok::<_, BoxError>(tally)
        });
        let client = tokio::spawn(async move {
            let payload = Bytes::from(vec![0xABu8; size]);
            let cpu0 = cpu_time();
            let t0 = Instant::now();
            let end = t0 + Duration::from_secs_f64(seconds);
            let mut sent = 0u64;
            while Instant::now() < end {
                for _ in 0..64 {
                    client.feed(&payload).await?;
                    sent += 1;
                }
            }
            client.finish().await?;
            Ok::<_, BoxError>((cpu0, t0, sent))
        });
        let (cpu0, t0, sent) = client.await??;
        let tally = server.await??;
        let wall = t0.elapsed().as_secs_f64();
        Ok(Sample::measured(&tally, cpu0, wall, sent))
    }
}

/// Ping-pong with one message in flight: the server echoes every message;
/// the client records `round_trips` round trips after [`WARMUP`].
struct PingPong {
    round_trips: usize,
    size: usize,
}

impl Measurement for PingPong {
    type Output = Latency;

    async fn run<S: WsEnd, C: WsEnd>(
        self,
        mut server: S,
        mut client: C,
    ) -> Result<Latency, BoxError> {
        let PingPong { round_trips, size } = self;
        // The server's application: echo every message back.
        let server = tokio::spawn(async move {
            while server.echo().await? {}
            Ok::<_, BoxError>(())
        });
        let pinger = tokio::spawn(async move {
            let payload = Bytes::from(vec![0xABu8; size]);
            let mut hist = histogram();
            for i in 0..WARMUP + round_trips {
                let t = Instant::now();
                client.send(&payload).await?;
                loop {
                    let next = tokio::time::timeout(ECHO_TIMEOUT, client.recv()).await?;
                    match next? {
                        Some(n) if n == size => break,
                        Some(_) => {}
                        None => return Err("connection closed".into()),
                    }
                }
                if i >= WARMUP {
                    hist.saturating_record(t.elapsed().as_nanos() as u64);
                }
            }
            client.finish().await?;
            Ok::<_, BoxError>(Latency::from_histogram(&hist))
        });
        let latency = pinger.await??;
        server.await??;
        Ok(latency)
    }
}

/// Connects a pair of `peer` over loopback (untimed), then runs `m` on it,
/// on a fresh multi-threaded tokio runtime (a worker per core).
fn measure<M: Measurement>(peer: Peer, m: M, what: &str) -> Option<M::Output> {
    let rt = ok(runtime(), "building the tokio runtime")?;
    let run = async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        match peer {
            Peer::Tungstenite => {
                let (server, client) =
                    tokio::try_join!(tt_accept(listener, plain), tt_dial(addr, "ws", plain))?;
                m.run(server, client).await
            }
            Peer::TungsteniteRustls => {
                let tls = Tls::new()?;
                let (server, client) = tokio::try_join!(
                    tt_accept(listener, |tcp| tls.acceptor.accept(tcp)),
                    tt_dial(addr, "wss", |tcp| tls.connect(tcp)),
                )?;
                m.run(server, client).await
            }
            Peer::FastWebSockets => {
                let (server, client) = tokio::try_join!(fws_accept(listener), fws_dial(addr))?;
                m.run(server, client).await
            }
        }
    };
    ok(rt.block_on(run), &format!("{}: {what}", peer.name()))
}

/// Accepts one TCP connection (`TCP_NODELAY` on, as stt sets it).
async fn tcp_accept(listener: TcpListener) -> Result<TcpStream, BoxError> {
    let (tcp, _) = listener.accept().await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// Dials `addr` (`TCP_NODELAY` on, as stt sets it).
async fn tcp_dial(addr: SocketAddr) -> Result<TcpStream, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

// ---------------------------------------------------- tokio-tungstenite ----

/// No wrapping: the `ws://` peer's TCP stream as it is.
async fn plain(tcp: TcpStream) -> std::io::Result<TcpStream> {
    Ok(tcp)
}

/// The server side: accepts one connection, `wrap`s it (TLS or nothing)
/// and upgrades.
async fn tt_accept<S, F>(
    listener: TcpListener,
    wrap: impl FnOnce(TcpStream) -> F,
) -> Result<WebSocketStream<S>, BoxError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = std::io::Result<S>>,
{
    let tcp = tcp_accept(listener).await?;
    Ok(tokio_tungstenite::accept_async(wrap(tcp).await?).await?)
}

/// The client side: dials `addr`, `wrap`s the connection (TLS or nothing)
/// and upgrades, asking for `scheme://localhost/`.
async fn tt_dial<S, F>(
    addr: SocketAddr,
    scheme: &str,
    wrap: impl FnOnce(TcpStream) -> F,
) -> Result<WebSocketStream<S>, BoxError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = std::io::Result<S>>,
{
    let tcp = tcp_dial(addr).await?;
    let url = format!("{scheme}://localhost:{}/", addr.port());
    let (ws, _) = tokio_tungstenite::client_async(url, wrap(tcp).await?).await?;
    Ok(ws)
}

/// What the last rustls handshake negotiated, for the report: protocol
/// version and cipher suite.
static TLS_NEGOTIATED: OnceLock<String> = OnceLock::new();

/// rustls on ring, both ends, for the `wss://` peer: a self-signed
/// certificate for `localhost` generated by rcgen, which the client trusts
/// explicitly (its only root); rustls' default protocol versions and cipher
/// suites.
struct Tls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    /// The name the client verifies the server's certificate against.
    name: ServerName<'static>,
}

impl Tls {
    fn new() -> Result<Tls, BoxError> {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
        let cert_der: CertificateDer<'static> = cert.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![cert_der.clone()], key)?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert_der)?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            name: ServerName::try_from("localhost")?,
        })
    }

    /// The client's TLS handshake over `tcp`, verifying the server as
    /// `localhost`; notes what was negotiated in [`TLS_NEGOTIATED`].
    async fn connect(&self, tcp: TcpStream) -> std::io::Result<client::TlsStream<TcpStream>> {
        let tls = self.connector.connect(self.name.clone(), tcp).await?;
        let conn = tls.get_ref().1;
        if let (Some(version), Some(suite)) =
            (conn.protocol_version(), conn.negotiated_cipher_suite())
        {
            let _ = TLS_NEGOTIATED.set(format!("{version:?}, {:?}", suite.suite()));
        }
        Ok(tls)
    }
}

// ------------------------------------------------------- fastwebsockets ----

/// The server side: accepts one connection, answers a minimal HTTP upgrade
/// (RFC 6455 §4.2: the `Sec-WebSocket-Accept` derived from the client's
/// key; no extensions, no subprotocol) and hands the socket to
/// fastwebsockets.
async fn fws_accept(listener: TcpListener) -> Result<WebSocket<TcpStream>, BoxError> {
    let mut tcp = tcp_accept(listener).await?;
    let request = read_head(&mut tcp).await?;
    let key = header(&request, "sec-websocket-key").ok_or("no Sec-WebSocket-Key")?;
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    tcp.write_all(response.as_bytes()).await?;
    Ok(WebSocket::after_handshake(tcp, Role::Server))
}

/// The client side: dials `addr`, sends a minimal HTTP upgrade request,
/// checks the answer (status 101 and the `Sec-WebSocket-Accept` for its
/// key) and hands the socket to fastwebsockets.
async fn fws_dial(addr: SocketAddr) -> Result<WebSocket<TcpStream>, BoxError> {
    let mut tcp = tcp_dial(addr).await?;
    let key = generate_key();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: localhost:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        addr.port()
    );
    tcp.write_all(request.as_bytes()).await?;
    let response = read_head(&mut tcp).await?;
    if !response.starts_with("HTTP/1.1 101") {
        return Err(format!("upgrade refused: {}", response.lines().next().unwrap_or("")).into());
    }
    if header(&response, "sec-websocket-accept") != Some(derive_accept_key(key.as_bytes()).as_str())
    {
        return Err("wrong Sec-WebSocket-Accept".into());
    }
    Ok(WebSocket::after_handshake(tcp, Role::Client))
}

/// Reads an HTTP head, up to and with the empty line that ends it, a byte
/// at a time so that nothing after it is taken from the socket (the
/// handshake is not timed).
async fn read_head(tcp: &mut TcpStream) -> Result<String, BoxError> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 {
            return Err("HTTP head over 8 KiB".into());
        }
        head.push(tcp.read_u8().await?);
    }
    Ok(String::from_utf8(head)?)
}

/// The value of the header `name` (lower case) in an HTTP head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

// ------------------------------------------------------------ report ----

/// Every contender, in the tables' order: the unsealed peers, then the
/// sealed ones.
const CONTENDERS: [&str; 5] = [
    "tokio-tungstenite, plain TCP (unsealed)",
    "fastwebsockets, plain TCP (unsealed)",
    "tokio-tungstenite over rustls (sealed)",
    "stt over WebSocket (sealed)",
    "stt over WebSocket, application in the reactors (sealed; latency only)",
];
/// The peers' places in [`CONTENDERS`]. Every ratio is taken against
/// tokio-tungstenite over plain TCP, and over rustls (stt's sealed peer).
const TUNGSTENITE: usize = 0;
const FASTWEBSOCKETS: usize = 1;
const TUNGSTENITE_RUSTLS: usize = 2;

fn size_name(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

pub fn workload(args: &Args) -> String {
    let (seconds, pings) = (args.seconds, args.pings);
    let n = CONTENDERS.len();
    // [contender][size] -> samples
    let mut tput: Vec<Vec<Vec<Sample>>> = vec![vec![Vec::new(); SIZES.len()]; n];
    // [contender][size][run]: the rate, for run-by-run ratios.
    let mut by_run: Vec<Vec<Vec<Option<f64>>>> = vec![vec![Vec::new(); SIZES.len()]; n];
    let mut lat: Vec<Vec<Vec<Latency>>> = vec![vec![Vec::new(); SIZES.len()]; n];
    for run in 0..args.runs {
        for (si, &size) in SIZES.iter().enumerate() {
            type Pair<'a> = (Option<Contender<'a, Sample>>, Contender<'a, Latency>);
            let peer = |peer: Peer| -> Pair<'_> {
                (
                    Some(Box::new(move || {
                        measure(peer, Throughput { seconds, size }, "throughput")
                    })),
                    Box::new(move || {
                        let m = PingPong {
                            round_trips: pings,
                            size,
                        };
                        measure(peer, m, "latency")
                    }),
                )
            };
            // In CONTENDERS' order.
            let runs: [Pair<'_>; 5] = [
                peer(Peer::Tungstenite),
                peer(Peer::FastWebSockets),
                peer(Peer::TungsteniteRustls),
                (
                    Some(Box::new(move || stt_throughput(seconds, size))),
                    Box::new(move || stt_latency(pings, size, false)),
                ),
                // Throughput is the application's sending loop: running the
                // application in the reactor changes nothing there.
                (None, Box::new(move || stt_latency(pings, size, true))),
            ];
            for (ci, (t, l)) in runs.iter().enumerate() {
                let name = CONTENDERS[ci];
                let size_n = size_name(size);
                if let Some(only) = &args.only {
                    if !format!("{name}, {size_n}").contains(only.as_str()) {
                        continue;
                    }
                }
                let measured = t.as_ref().map(|t| t());
                by_run[ci][si].push(measured.as_ref().and_then(|m| m.as_ref().map(|s| s.rate)));
                match measured {
                    None => {}
                    Some(Some(s)) => {
                        eprintln!(
                            "run {}/{}: {name}, {size_n}: {:.0} msg/s ({:.2} Gbit/s, {} of {} delivered), {:.2} cores",
                            run + 1,
                            args.runs,
                            s.rate,
                            s.rate * size as f64 * 8.0 / 1e9,
                            s.delivered,
                            s.sent,
                            s.cores
                        );
                        tput[ci][si].push(s);
                    }
                    Some(None) => {
                        eprintln!("run {}: {name}, {size_n}: throughput failed", run + 1)
                    }
                }
                match l() {
                    Some(s) => {
                        eprintln!(
                            "run {}/{}: {name}, {size_n}: round trip p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
                            run + 1,
                            args.runs,
                            s.p50,
                            s.p99,
                            s.max
                        );
                        lat[ci][si].push(s);
                    }
                    None => eprintln!("run {}: {name}, {size_n}: latency failed", run + 1),
                }
            }
        }
    }

    let mut t_table = String::new();
    let _ = writeln!(
        t_table,
        "| contender | message | messages/s (median) | min – max | goodput Gbit/s | vs tokio-tungstenite | vs tokio-tungstenite over rustls | cores busy | cores per Gbit/s | delivered / sent |"
    );
    let _ = writeln!(t_table, "|---|---|---|---|---|---|---|---|---|---|");
    for (si, &size) in SIZES.iter().enumerate() {
        let rate = |ci: usize| median(tput[ci][si].iter().map(|s| s.rate).collect());
        for (ci, name) in CONTENDERS.iter().enumerate() {
            let s = &tput[ci][si];
            if s.is_empty() {
                continue;
            }
            let rates: Vec<f64> = s.iter().map(|x| x.rate).collect();
            let (lo, hi) = min_max(&rates);
            let cores = median(s.iter().map(|x| x.cores).collect());
            let gbit = rate(ci) * size as f64 * 8.0 / 1e9;
            let delivered: u64 = s.iter().map(|x| x.delivered).sum();
            let sent: u64 = s.iter().map(|x| x.sent).sum();
            let vs = |base: usize| {
                if base == ci {
                    "1.00×".to_string()
                } else {
                    let runs = paired(&by_run[ci][si], &by_run[base][si]);
                    ratio_cell(rate(ci), rate(base), runs)
                }
            };
            let _ = writeln!(
                t_table,
                "| {name} | {} | {:.0} | {:.0} – {:.0} | {:.2} | {} | {} | {:.2} | {:.2} | {:.1}% |",
                size_name(size),
                rate(ci),
                lo,
                hi,
                gbit,
                vs(TUNGSTENITE),
                vs(TUNGSTENITE_RUSTLS),
                cores,
                if gbit > 0.0 { cores / gbit } else { 0.0 },
                100.0 * delivered as f64 / sent.max(1) as f64
            );
        }
    }

    let mut l_table = String::new();
    let _ = write!(l_table, "| contender | message |");
    for p in Latency::NAMES {
        let _ = write!(l_table, " {p} µs |");
    }
    let _ = writeln!(
        l_table,
        " p50 / p99 vs tokio-tungstenite | p50 / p99 vs tokio-tungstenite over rustls |"
    );
    let _ = writeln!(l_table, "|---|---|---|---|---|---|---|---|---|");
    for (si, &size) in SIZES.iter().enumerate() {
        let med = |ci: usize, k: usize| median(lat[ci][si].iter().map(|l| l.values()[k]).collect());
        for (ci, name) in CONTENDERS.iter().enumerate() {
            let s = &lat[ci][si];
            if s.is_empty() {
                continue;
            }
            let _ = write!(l_table, "| {name} | {} |", size_name(size));
            for k in 0..Latency::NAMES.len() {
                let v: Vec<f64> = s.iter().map(|l| l.values()[k]).collect();
                let (lo, hi) = min_max(&v);
                let _ = write!(l_table, " {:.1} ({:.1} – {:.1}) |", median(v), lo, hi);
            }
            for base in [TUNGSTENITE, TUNGSTENITE_RUSTLS] {
                let _ = write!(
                    l_table,
                    " {} / {} |",
                    ratio(med(ci, 0), med(base, 0)),
                    ratio(med(ci, 2), med(base, 2))
                );
            }
            let _ = writeln!(l_table);
        }
    }

    format!(
        "## WebSocket, one connection over loopback: stt (sealed) against tokio-tungstenite (unsealed, and sealed over rustls) and fastwebsockets (unsealed)\n\n\
         Machine: {machine}. {runs} runs, contenders and sizes interleaved. stt: two nodes of one \
         reactor each, WebSocket only (no UDP socket), `ws://`, AEAD as negotiated. The tokio \
         peers: server and client tasks on one multi-threaded tokio runtime (a worker per core), \
         `TCP_NODELAY` on both ends: tokio-tungstenite over plain TCP, no encryption; \
         fastwebsockets over plain TCP, no encryption (`WebSocket::after_handshake` on each end's \
         `TcpStream`, default settings, after a minimal HTTP upgrade); tokio-tungstenite over \
         rustls (`wss://`, tokio-rustls on ring, a self-signed certificate from rcgen that the \
         client trusts explicitly, rustls' defaults; negotiated: {tls}).\n\n\
         ### Throughput\n\n\
         One sender → one receiver for {secs} s, as fast as the sender's API allows (stt: \
         `Node::send`, which waits while the reactor's queue is full; tokio-tungstenite: \
         `SinkExt::feed`, flushed at the end; fastwebsockets: `write_frame`, which writes each \
         frame to the socket at once). \"messages/s\" is what the receiving application \
         got, first to last arrival (stt's gives each message's buffer back with \
         `Node::recycle`); \"cores busy\" is the whole process's CPU time (both ends, \
         every thread) over the wall time from the first send to the last arrival. Ratios: \
         above 1 is more messages/s than tokio-tungstenite over plain TCP, or over rustls; \
         each divides medians, then \"per run\" gives the median and the range of the \
         ratios taken run by run (the contenders of one run share its noise).\n\n\
         {t_table}\n\
         ### Round-trip latency\n\n\
         Ping-pong, one message in flight, the server's application echoing it back; {pings} \
         round trips per run after {warmup} of warm-up, in an HDR histogram. Each cell is the \
         median over runs (min – max), in µs; the last two columns divide each contender's p50 \
         and p99 by tokio-tungstenite's over plain TCP, and over rustls (below 1: faster). Read \
         with the setup in mind: with one message in flight a tokio worker can serve both ends \
         of a round trip without waking another thread, while stt's round trip, with the \
         applications on their own threads, is handed between threads six times (client \
         application → client reactor → server reactor → echo thread → server reactor → \
         client reactor → client application); with the applications in the reactors \
         (`stt::on_reactor` handlers: the server's echoes, the client's records the \
         round trip and sends the next ping), two.\n\n{l_table}",
        machine = machine(),
        runs = args.runs,
        tls = TLS_NEGOTIATED.get().map_or("no rustls run", |s| s.as_str()),
        secs = args.seconds,
        warmup = WARMUP,
    )
}
