//! Attacks by a member of the network (it holds the shared seed): opening
//! sessions as fast as it can, and holding reassembly memory with large
//! messages it never completes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stt::node::QuotaConfig;
use stt::{ConnectOptions, Node, Session};

use super::floods::Rng;
use super::{config, Running, Target};

/// Threads of the session opener, each dialling one session at a time.
const OPENERS: usize = 4;
/// Most sessions the opener asks for, whatever `--seconds` says.
const MAX_OPENS: u64 = 100_000;
/// How long one of its dials (and one of the bystander's) may wait.
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Sessions the reassembly holder opens (through its relay).
const HOLDER_SESSIONS: usize = 4;
/// Size of each of its messages: the largest stt message.
const BIG: usize = 16 << 20;
/// Its relay forwards one in this many of its large datagrams (fragments)
/// and drops the rest: the server reserves a message's whole size at its
/// first fragment, so a few fragments per message are enough.
const FORWARD_ONE_IN: u64 = 16;

/// Dial outcomes by error text, for the report.
#[derive(Default)]
struct Outcomes {
    ok: u64,
    errors: BTreeMap<String, u64>,
}

impl Outcomes {
    fn add(&mut self, r: Result<Session, stt::ConnectError>) -> Option<Session> {
        match r {
            Ok(s) => {
                self.ok += 1;
                Some(s)
            }
            Err(e) => {
                // The peer address varies: keep the error's kind.
                let text = e.to_string();
                let key = match text.split_once(": ") {
                    Some((_, why)) if text.starts_with("the handshake with") => {
                        format!("handshake failed: {why}")
                    }
                    _ => text,
                };
                *self.errors.entry(key).or_default() += 1;
                None
            }
        }
    }

    fn text(&self) -> String {
        let mut t = format!("{} ok", self.ok);
        for (e, n) in &self.errors {
            t.push_str(&format!(", {n} × \"{e}\""));
        }
        t
    }
}

/// Attack 6: a member dials the server from [`OPENERS`] threads, one
/// session after another, as fast as the handshakes complete, and keeps
/// every session it gets. Meanwhile another member (a bystander, also on
/// 127.0.0.1) tries to open one session every 250 ms.
pub fn session_opener(target: &Target, duration: Duration) -> Option<Running> {
    let attacker = Arc::new(crate::common::ok(
        Node::start(config("member-opener", 1).with_server_mode(false)),
        "attacker node",
    )?);
    let bystander = Arc::new(crate::common::ok(
        Node::start(config("member-bystander", 1).with_server_mode(false)),
        "bystander node",
    )?);
    let stop = Arc::new(AtomicBool::new(false));
    let mut running = Running::new(stop.clone());
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let kept = Arc::new(Mutex::new(Vec::new()));
    let tries = Arc::new(AtomicU64::new(0));
    let first_refusal = Arc::new(Mutex::new(None::<(Duration, u64)>));
    let t0 = Instant::now();
    let options = ConnectOptions::new().with_timeout(DIAL_TIMEOUT);
    for _ in 0..OPENERS {
        let (attacker, stop, outcomes, kept, tries, first_refusal, options, addr) = (
            attacker.clone(),
            stop.clone(),
            outcomes.clone(),
            kept.clone(),
            tries.clone(),
            first_refusal.clone(),
            options.clone(),
            target.udp,
        );
        running.thread(std::thread::spawn(move || {
            let end = t0 + duration;
            while !stop.load(Ordering::Relaxed)
                && Instant::now() < end
                && tries.fetch_add(1, Ordering::Relaxed) < MAX_OPENS
            {
                let r = attacker.connect_udp_with(addr, &options);
                let mut o = outcomes.lock().unwrap_or_else(|e| e.into_inner());
                let failed = r.is_err();
                if let Some(s) = o.add(r) {
                    kept.lock().unwrap_or_else(|e| e.into_inner()).push(s);
                }
                if failed {
                    first_refusal
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert((t0.elapsed(), o.ok));
                }
            }
            String::new()
        }));
    }
    let by_outcomes = Arc::new(Mutex::new(Outcomes::default()));
    {
        let (bystander, stop, by_outcomes, options, addr) = (
            bystander.clone(),
            stop.clone(),
            by_outcomes.clone(),
            options.clone(),
            target.udp,
        );
        running.thread(std::thread::spawn(move || {
            let end = t0 + duration;
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                let next = Instant::now() + Duration::from_millis(250);
                let r = bystander.connect_udp_with(addr, &options);
                let s = by_outcomes.lock().unwrap_or_else(|e| e.into_inner()).add(r);
                if let Some(s) = s {
                    let _ = s.close();
                }
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            String::new()
        }));
    }
    running.on_finish(move |target| {
        let o = outcomes.lock().unwrap_or_else(|e| e.into_inner());
        let quotas = QuotaConfig::default();
        let report = format!(
            "{} dials by one member ({OPENERS} threads, {} s timeout): {}{}; server held {} \
             sessions at the end (quotas: {} per node id, {} per IP address, and here every \
             peer is 127.0.0.1); a second member dialling every 250 ms meanwhile: {}",
            o.ok + o.errors.values().sum::<u64>(),
            DIAL_TIMEOUT.as_secs(),
            o.text(),
            match *first_refusal.lock().unwrap_or_else(|e| e.into_inner()) {
                Some((at, ok)) => format!(
                    " (first failure after {ok} sessions, at {:.2} s)",
                    at.as_secs_f64()
                ),
                None => String::new(),
            },
            target.node.stats().sessions,
            quotas.sessions_per_peer,
            quotas.sessions_per_address,
            by_outcomes.lock().unwrap_or_else(|e| e.into_inner()).text(),
        );
        kept.lock().unwrap_or_else(|e| e.into_inner()).clear();
        attacker.stop();
        bystander.stop();
        report
    });
    Some(running)
}

/// A relay between one dialler and the server that forwards only one in
/// [`FORWARD_ONE_IN`] of the dialler's large datagrams (the fragments of
/// big messages), so that every large message stays incomplete at the
/// server until its reassembly timeout. Counts forwarded and dropped.
struct DroppingRelay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, u64)>>,
}

impl DroppingRelay {
    fn start(server: SocketAddr) -> Option<DroppingRelay> {
        let socket = crate::common::big_std_socket();
        let _ = socket.set_read_timeout(Some(Duration::from_millis(5)));
        let addr = socket.local_addr().ok()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut client = None;
                let mut buf = vec![0u8; 65_536];
                let mut rng = Rng(0xd20b_0000_0000_0001);
                let (mut forwarded, mut dropped) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    if from == server {
                        if let Some(c) = client {
                            let _ = socket.send_to(&buf[..n], c);
                        }
                        continue;
                    }
                    client = Some(from);
                    if n > 1000 && !rng.next().is_multiple_of(FORWARD_ONE_IN) {
                        dropped += 1;
                        continue;
                    }
                    let _ = socket.send_to(&buf[..n], server);
                    forwarded += 1;
                }
                (forwarded, dropped)
            })
        };
        Some(DroppingRelay {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or((0, 0))
    }
}

impl Drop for DroppingRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Attack 7: a member opens [`HOLDER_SESSIONS`] sessions through a relay
/// of its own that loses most of its fragments, and sends 16 MiB messages
/// round-robin over them as fast as its node takes them: each message the
/// server starts reassembling holds its whole size until it completes or
/// its reassembly timeout (5 s) ends it.
pub fn reassembly_holder(target: &Target, duration: Duration) -> Option<Running> {
    let relay = DroppingRelay::start(target.udp)?;
    let attacker = Arc::new(crate::common::ok(
        Node::start(config("member-holder", 1).with_server_mode(false)),
        "attacker node",
    )?);
    let sessions: Vec<Session> = (0..HOLDER_SESSIONS)
        .filter_map(|_| {
            crate::common::ok(
                attacker.connect_udp(relay.addr),
                "dialling through the relay",
            )
        })
        .collect();
    if sessions.is_empty() {
        return None;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut running = Running::new(stop.clone());
    let ids: Vec<_> = sessions.iter().map(|s| s.id()).collect();
    {
        let attacker = attacker.clone();
        running.thread(std::thread::spawn(move || {
            let end = Instant::now() + duration;
            let big = vec![0x42u8; BIG];
            let (mut sent, mut failed) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                let id = ids[(sent + failed) as usize % ids.len()];
                match attacker.send_timeout(id, &big, Duration::from_millis(200)) {
                    Ok(()) => sent += 1,
                    Err(_) => failed += 1,
                }
            }
            format!(
                "{sent} messages of {} MiB ({} MiB) over {} sessions of one member{}",
                BIG >> 20,
                sent * (BIG as u64 >> 20),
                ids.len(),
                if failed > 0 {
                    format!(" ({failed} sends timed out in its own node)")
                } else {
                    String::new()
                }
            )
        }));
    }
    running.on_finish(move |_| {
        drop(sessions);
        attacker.stop();
        let (forwarded, dropped) = relay.stop();
        let q = QuotaConfig::default();
        format!(
            "its relay forwarded {forwarded} datagrams and dropped {dropped} fragments (it \
             forwards 1 in {FORWARD_ONE_IN}); reassembly quota {} MiB per node id",
            q.reassembly_per_peer >> 20
        )
    });
    Some(running)
}
