//! WebSocket attacks: connections that upgrade and then say nothing, and
//! connections that send junk binary messages.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stt::frame::{FrameType, HEADER_LEN};
use stt::WsConfig;
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

use super::floods::Rng;
use super::{rss, Running, Target};

/// Idle connections attack 4 opens (fewer if `--seconds` runs out first).
pub const IDLE_CONNECTIONS: usize = 2_000;
/// Connections (one thread each) that send junk in attack 5.
const JUNK_CONNECTIONS: usize = 4;
/// Most junk messages one connection sends, whatever `--seconds` says.
const MAX_JUNK: u64 = 5_000_000;

/// Raises this process's open-file limit to `want` if the hard limit
/// allows; returns whether it did.
pub fn raise_fd_limit(want: u64) -> bool {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with a valid pointer to a local.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return false;
        }
        if lim.rlim_cur >= want {
            return true;
        }
        lim.rlim_cur = want.min(lim.rlim_max);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur >= want
    }
}

/// A blocking WebSocket client connection to the target, upgraded.
fn open(url: &str, addr: std::net::SocketAddr) -> Result<WebSocket<TcpStream>, String> {
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = tcp.set_write_timeout(Some(Duration::from_millis(500)));
    let _ = tcp.set_nodelay(true);
    tungstenite::client(url, tcp)
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

/// A raw TCP connection to the target that completes a WebSocket upgrade
/// (written by hand, so that this end keeps no buffers in this process: the
/// memory the idle attack measures is the server's) and is then left alone.
fn open_raw(addr: std::net::SocketAddr) -> Result<TcpStream, String> {
    let mut tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 || response.len() > 8192 {
            return Err("the server closed during the upgrade".into());
        }
        response.extend_from_slice(&buf[..n]);
    }
    if !response.starts_with(b"HTTP/1.1 101") {
        let line = response.split(|&b| b == b'\r').next().unwrap_or_default();
        return Err(String::from_utf8_lossy(line).into_owned());
    }
    Ok(tcp)
}

/// Attack 4: connections that complete the upgrade, then send nothing and
/// read nothing (so they answer no ping). After the attack they stay open
/// while the report waits for the server to close them, up to its
/// `dead_after` + 5 s; then the attacker closes what is left.
pub fn idle(target: &Target, duration: Duration) -> Option<Running> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut running = Running::new(stop.clone());
    let conns = Arc::new(Mutex::new(Vec::<TcpStream>::new()));
    let rss0 = rss();
    let opened_at = Arc::new(Mutex::new(None::<Instant>));
    {
        let (conns, addr, opened_at) = (conns.clone(), target.ws, opened_at.clone());
        running.thread(std::thread::spawn(move || {
            let end = Instant::now() + duration;
            let (mut opened, mut failed) = (0usize, 0usize);
            let mut first_error = None;
            let t0 = Instant::now();
            while opened < IDLE_CONNECTIONS && !stop.load(Ordering::Relaxed) && Instant::now() < end
            {
                match open_raw(addr) {
                    Ok(tcp) => {
                        conns.lock().unwrap_or_else(|e| e.into_inner()).push(tcp);
                        opened += 1;
                    }
                    Err(e) => {
                        failed += 1;
                        first_error.get_or_insert(e);
                        if failed > 100 {
                            break;
                        }
                    }
                }
            }
            *opened_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            format!(
                "{opened} connections upgraded in {:.1} s, then silent{}",
                t0.elapsed().as_secs_f64(),
                match first_error {
                    Some(e) => format!(" ({failed} failed: {e})"),
                    None => String::new(),
                }
            )
        }));
    }
    running.on_finish(move |target| {
        let n = conns.lock().unwrap_or_else(|e| e.into_inner()).len();
        if n == 0 {
            return String::new();
        }
        let per = (rss().saturating_sub(rss0)) as f64 / n as f64 / 1024.0;
        let open_now = |t: &Target| {
            t.node
                .stats()
                .websocket_connections
                .map_or(0, |c| c.connections_open)
        };
        // The honest session's connection stays open.
        let idle_open = |t: &Target| open_now(t).saturating_sub(1);
        let at_end = idle_open(target);
        let last = opened_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or_else(Instant::now);
        let dead_after = WsConfig::default().dead_after;
        let give_up = last + dead_after + Duration::from_secs(5);
        let mut first_close = None;
        let mut left = at_end;
        while Instant::now() < give_up {
            left = idle_open(target);
            if left < at_end && first_close.is_none() {
                first_close = Some(last.elapsed());
            }
            if left == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let closed_by = last.elapsed();
        conns.lock().unwrap_or_else(|e| e.into_inner()).clear();
        format!(
            "≈ {per:.1} KiB of process RSS per connection (the server's: this end is a bare \
             socket); {at_end} still open at \
             the attack's end; {}",
            if left == 0 {
                format!(
                    "the server closed them all, the first {:.1} s and the last {:.1} s after \
                     the last upgrade (`dead_after` {} s)",
                    first_close.unwrap_or(closed_by).as_secs_f64(),
                    closed_by.as_secs_f64(),
                    dead_after.as_secs()
                )
            } else {
                format!(
                    "{left} still open {:.0} s after the last upgrade (the attacker then closed them)",
                    closed_by.as_secs_f64()
                )
            }
        )
    });
    Some(running)
}

/// Attack 5: connections that upgrade, then send junk binary messages as
/// fast as they can: half random bytes, half shaped as sealed DATA frames
/// with random session ids. A connection the server closes is opened again.
pub fn junk(target: &Target, duration: Duration) -> Option<Running> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut running = Running::new(stop.clone());
    // Per thread: messages, bytes, connections opened, sends that failed.
    let totals = Arc::new(Mutex::new(Vec::<(u64, u64, u64, u64)>::new()));
    for t in 0..JUNK_CONNECTIONS {
        let (stop, url, addr, totals) = (stop.clone(), target.ws_url(), target.ws, totals.clone());
        running.thread(std::thread::spawn(move || {
            let end = Instant::now() + duration;
            let mut rng = Rng(0x5151_0000_0000_0001 + t as u64 * 0x9e37_79b9);
            let (mut sent, mut bytes, mut opened, mut broken) = (0u64, 0u64, 0u64, 0u64);
            let mut ws = None;
            let mut d = Vec::with_capacity(2048);
            while sent < MAX_JUNK && !stop.load(Ordering::Relaxed) && Instant::now() < end {
                let conn = match &mut ws {
                    Some(c) => c,
                    None => match open(&url, addr) {
                        Ok(c) => {
                            opened += 1;
                            ws.insert(c)
                        }
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(10));
                            continue;
                        }
                    },
                };
                let len = 1 + (rng.next() % 1400) as usize;
                d.resize(len, 0);
                rng.fill(&mut d);
                if len > HEADER_LEN && sent % 2 == 0 {
                    d[..3].copy_from_slice(b"ST\x01");
                    d[3] = FrameType::DATA;
                    d[4] = 0;
                    d[25..29].copy_from_slice(&((len - HEADER_LEN) as u32).to_be_bytes());
                }
                match conn.send(Message::Binary(d.clone().into())) {
                    Ok(()) => {
                        sent += 1;
                        bytes += len as u64;
                    }
                    Err(_) => {
                        broken += 1;
                        ws = None;
                    }
                }
            }
            totals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((sent, bytes, opened, broken));
            String::new()
        }));
    }
    running.on_finish(move |_| {
        let totals = std::mem::take(&mut *totals.lock().unwrap_or_else(|e| e.into_inner()));
        let (sent, bytes, opened, broken) = totals.iter().fold((0, 0, 0, 0), |a, t| {
            (a.0 + t.0, a.1 + t.1, a.2 + t.2, a.3 + t.3)
        });
        format!(
            "{sent} junk binary messages ({:.1} MiB) over {opened} connections \
             ({JUNK_CONNECTIONS} at a time); {broken} sends failed on a connection the server \
             had closed",
            bytes as f64 / (1 << 20) as f64
        )
    });
    Some(running)
}
