//! What the hostile-network tests (`tests/hostile_*.rs`) share: a node on
//! loopback with large socket buffers, waiting on its statistics and
//! messages, the flood volumes, genuine message 1s of the test network, UDP
//! packets with a forged source for a raw socket, and running a test in a
//! process of its own (for resident-memory figures).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stt::crypto::{Identity, NetworkKey};
use stt::frame::SessionId;
use stt::session::{Session as SansIoSession, SessionConfig};
use stt::{Node, NodeConfig, NodeEvent, NodeStats, Session, UdpConfig};

/// The shared seed of every node of these tests.
pub const SHARED: &[u8] = b"hostile test network shared seed, 32+ bytes";

/// How long any one wait may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// Whether `STT_SOAK` asks for the full flood volumes.
pub fn soak() -> bool {
    std::env::var_os("STT_SOAK").is_some_and(|v| v != "0")
}

/// A node of the test network on 127.0.0.1 (any port), one reactor, 4 MiB
/// socket buffers.
pub fn config(seed: &str) -> NodeConfig {
    NodeConfig::new(format!("{seed:-<40}").as_bytes(), SHARED)
        .with_udp(UdpConfig {
            bind_address: "127.0.0.1".parse().unwrap(),
            receive_buffer_size: 4 << 20,
            send_buffer_size: 4 << 20,
            ..UdpConfig::default()
        })
        .with_reactors(1)
}

/// A server and a client started from these configs, and the client's UDP
/// session to the server.
pub fn connected(server: NodeConfig, client: NodeConfig) -> (Node, Node, Session) {
    let server = Node::start(server).unwrap();
    let client = Node::start(client).unwrap();
    let session = client
        .connect_udp(server.udp_local_addr().unwrap())
        .unwrap();
    (server, client, session)
}

/// Waits until `cond` holds for the node's stats, or fails with `what`.
pub fn wait_for(node: &Node, what: &str, cond: impl Fn(&NodeStats) -> bool) -> NodeStats {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = node.stats();
        if cond(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:#?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for the next message on `node`.
pub fn next_message(node: &Node) -> Vec<u8> {
    let events = node.events();
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(NodeEvent::Message(message)) => return message.payload,
            Ok(_) => {}
            Err(e) => panic!("no message: {e}"),
        }
    }
}

/// Datagrams a flooder sends between 0.5 ms pauses: by default about
/// 10,000 a second, far past the cookie threshold yet within what a debug
/// build of the server reads (an unoptimised node checks ~40,000 message 1s
/// a second here), so that the test measures the defence, not the kernel
/// dropping an overloaded socket's datagrams; `STT_SOAK=1` floods 8× harder.
pub fn flood_burst() -> usize {
    if soak() {
        64
    } else {
        8
    }
}

/// Cookie challenges a flood test waits for before the honest clients
/// connect (they connect while the flood goes on).
pub fn flood_volume() -> u64 {
    if soak() {
        200_000
    } else {
        10_000
    }
}

/// Sends `message` on `session` from `client` until `server` delivers it.
/// A flood that outruns the server makes the kernel drop what the socket
/// buffer cannot hold, honest datagrams among them: UDP promises nothing
/// more, so an honest client under attack sends again.
pub fn deliver_until_seen(client: &Node, server: &Node, session: SessionId, message: &[u8]) {
    let events = server.events();
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no message got through");
        client.send(session, message).unwrap();
        while let Ok(e) = events.recv_timeout(Duration::from_millis(200)) {
            if let NodeEvent::Message(m) = e {
                if m.session == session {
                    return;
                }
            }
        }
    }
}

/// Genuine message-1 datagrams from a member of the network (the worst
/// case: they authenticate), each for a fresh session id.
pub fn genuine_msg1s(n: usize) -> Vec<Vec<u8>> {
    let identity = Identity::from_seed(&[9u8; 32]).unwrap();
    let network = NetworkKey::from_seed(SHARED).unwrap();
    let now = Instant::now();
    (0..n)
        .map(|i| {
            let id = SessionId(0x5eed_0000_0000_0000 | (i as u64) << 8 | 0x11);
            let mut s =
                SansIoSession::connect(SessionConfig::default(), &identity, &network, id, now)
                    .unwrap();
            s.poll_transmit().unwrap()
        })
        .collect()
}

/// Resident memory of this process, bytes (Linux), for before/after
/// comparisons.
pub fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Runs test `name` again in a process of its own (resident memory is a
/// process-wide figure: the other tests of its file must not move it).
/// Returns false in that child, which then runs the test's body.
pub fn isolated(name: &str) -> bool {
    if std::env::var_os("STT_ISOLATED").is_some() {
        return false;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("STT_ISOLATED", "1")
        .output()
        .unwrap();
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name} failed in its process:\n{stdout}"
    );
    assert!(stdout.contains("1 passed"), "{name} did not run:\n{stdout}");
    true
}

/// Sets a stop flag when dropped: a thread flooding the machine must end
/// even when the test panics, or it would slow every later test of its
/// binary.
pub struct StopOnDrop(pub Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// An IPv4 + UDP packet from `src` to `dst` carrying `payload`: what a raw
/// socket sends with a forged source address. The kernel fills the IP
/// checksum; a UDP checksum of 0 means none (allowed over IPv4).
pub fn spoofed_packet(
    src: std::net::SocketAddrV4,
    dst: std::net::SocketAddrV4,
    payload: &[u8],
) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&src.ip().octets());
    p.extend_from_slice(&dst.ip().octets());
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}
