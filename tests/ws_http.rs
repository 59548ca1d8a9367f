//! Plain HTTP on the WebSocket port (`WsConfig::http`, `StaticFiles`) over
//! real sockets on loopback: files, 404, traversal, HEAD, 405, an oversized
//! head, hostile heads, a large file written without blocking the reactor,
//! and an upgrade on the same port that still works.
//!
//! Each server is a `WsTransport` on port 0, driven on its own thread as a
//! reactor would drive it (echoing datagrams back).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use stt::transport::ws::{HttpRequest, HttpResponse, StaticFiles, WsConfig, WsTransport};
use stt::transport::Transport;

/// A transport echoing on its own thread until dropped.
struct Server {
    addr: SocketAddr,
    counters: Arc<stt::transport::ws::WsCounters>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(config: WsConfig) -> Server {
        let mut t = WsTransport::bind("127.0.0.1:0".parse().unwrap(), config).unwrap();
        let addr = t.local_addr();
        let counters = t.ws_counters();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut poll = mio::Poll::new().unwrap();
            t.register(poll.registry(), mio::Token(0)).unwrap();
            let mut events = mio::Events::with_capacity(16);
            while !stop2.load(Ordering::Relaxed) {
                let _ = poll.poll(&mut events, Some(Duration::from_millis(5)));
                loop {
                    let mut back = Vec::new();
                    let n = t
                        .recv(&mut |from, d| back.push((from, d.to_vec())))
                        .unwrap_or(0);
                    for (to, d) in back {
                        t.peer_authenticated(to);
                        let _ = t.send(to, &d);
                    }
                    let _ = t.flush();
                    if n == 0 {
                        break;
                    }
                }
                if t.poll_timeout().is_some_and(|d| d <= Instant::now()) {
                    t.handle_timeout(Instant::now());
                }
                let _ = t.flush();
            }
        });
        Server {
            addr,
            counters,
            stop,
            thread: Some(thread),
        }
    }

    /// Sends `request` raw and reads the answer to the end of the stream.
    fn ask(&self, request: &[u8]) -> Answer {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(request).unwrap();
        let mut bytes = Vec::new();
        s.read_to_end(&mut bytes).unwrap();
        Answer::parse(&bytes)
    }

    fn get(&self, target: &str) -> Answer {
        self.ask(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A response, split.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn parse(bytes: &[u8]) -> Answer {
        let split = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(bytes)));
        let head = String::from_utf8(bytes[..split + 2].to_vec()).unwrap();
        let status = head[9..12].parse().unwrap();
        Answer {
            status,
            head,
            body: bytes[split + 4..].to_vec(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A directory with a site in `site/` and a file beside it, removed on
/// drop.
struct Site(PathBuf);

impl Site {
    fn new(name: &str) -> Site {
        let dir = std::env::temp_dir().join(format!("stt-ws-http-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("site/js")).unwrap();
        std::fs::write(dir.join("site/index.html"), "<h1>stt</h1>").unwrap();
        std::fs::write(dir.join("site/js/app.js"), "console.log(1)").unwrap();
        std::fs::write(dir.join("site/style.css"), "body{}").unwrap();
        std::fs::write(dir.join("secret.txt"), "do not serve").unwrap();
        Site(dir)
    }

    fn server(&self) -> Server {
        let files = StaticFiles::new(self.0.join("site")).unwrap();
        Server::start(WsConfig {
            http: Some(Arc::new(files)),
            ..WsConfig::default()
        })
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn files_are_served_with_their_types_and_missing_ones_get_404() {
    let site = Site::new("files");
    let s = site.server();
    let a = s.get("/");
    assert_eq!((a.status, a.body.as_slice()), (200, &b"<h1>stt</h1>"[..]));
    assert_eq!(a.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(a.header("Connection"), Some("close"));
    assert_eq!(a.header("Content-Length"), Some("12"));
    let a = s.get("/js/app.js?v=3");
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("Content-Type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(a.body, b"console.log(1)");
    assert_eq!(
        s.get("/style.css").header("Content-Type"),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(s.get("/nothing.html").status, 404);
    assert_eq!(s.get("/js/").status, 404, "no index.html there");
    // Counted when the connection ends, just after the client read it all.
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.counters.http_requests.load(Ordering::Relaxed) < 5 && Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(s.counters.http_requests.load(Ordering::Relaxed), 5);
    assert_eq!(s.counters.connections_accepted.load(Ordering::Relaxed), 0);
}

#[test]
fn traversal_attempts_never_reach_the_file_beside_the_site() {
    let site = Site::new("traversal");
    let s = site.server();
    for target in [
        "/../secret.txt",
        "/js/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/js/%2E%2E/%2E%2E/secret.txt",
        "/..%5csecret.txt",
        "/%00",
        "/%",
        "//../secret.txt",
        "http://x/../secret.txt",
    ] {
        let a = s.get(target);
        assert!(matches!(a.status, 400 | 404), "{target}: {}", a.head);
        assert!(!a.body.starts_with(b"do not serve"), "{target}");
    }
}

#[test]
fn head_is_answered_without_a_body_and_other_methods_get_405() {
    let site = Site::new("methods");
    let s = site.server();
    let a = s.ask(b"HEAD /js/app.js HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("Content-Length"), Some("14"));
    assert!(a.body.is_empty());
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "BREW"] {
        let request = format!("{method} / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        let a = s.ask(request.as_bytes());
        assert_eq!(a.status, 405, "{method}");
        assert_eq!(a.header("Allow"), Some("GET, HEAD"));
    }
    // A GET with a body is refused, its body dropped.
    let a = s.ask(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(a.status, 400);
}

#[test]
fn an_upgrade_on_the_same_port_still_works() {
    let site = Site::new("upgrade");
    let s = site.server();
    assert_eq!(s.get("/").status, 200);
    let tcp = TcpStream::connect(s.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let url = format!("ws://{}/", s.addr);
    let (mut ws, response) = tungstenite::client(url.as_str(), tcp).unwrap();
    assert_eq!(response.status(), 101);
    ws.send(tungstenite::Message::Binary(vec![1, 2, 3].into()))
        .unwrap();
    loop {
        match ws.read().unwrap() {
            tungstenite::Message::Binary(b) => {
                assert_eq!(&b[..], &[1, 2, 3]);
                break;
            }
            _ => continue,
        }
    }
    assert_eq!(s.counters.connections_accepted.load(Ordering::Relaxed), 1);
    // A bad upgrade is still refused as an upgrade, not served as a file.
    let a =
        s.ask(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    assert_eq!(a.status, 400);
}

#[test]
fn oversized_and_hostile_heads_are_refused_and_the_server_goes_on() {
    let site = Site::new("hostile");
    let s = site.server();
    let long = format!("GET / HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(9000));
    assert_eq!(s.ask(long.as_bytes()).status, 431);
    let many: String = (0..200).map(|i| format!("X-{i}: y\r\n")).collect();
    assert_eq!(
        s.ask(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes())
            .status,
        431
    );
    // A head that never ends, past the limit, without a blank line.
    let endless = format!("GET / HTTP/1.1\r\n{}", "X: y\r\n".repeat(2000));
    assert_eq!(s.ask(endless.as_bytes()).status, 431);
    for garbage in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\n\r\n",
        b" / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    ] {
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.write_all(garbage).unwrap();
        let mut bytes = Vec::new();
        let _ = c.read_to_end(&mut bytes);
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 4"),
            "{garbage:?}: {text}"
        );
    }
    // Half a head, then gone.
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(b"GET /index.html HTTP/1.1\r\nHo").unwrap();
    drop(c);
    assert_eq!(s.get("/").status, 200, "still serving");
}

#[test]
fn a_large_file_is_written_whole_while_the_reader_is_slow() {
    let site = Site::new("large");
    let big: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    std::fs::write(site.0.join("site/big.wasm"), &big).unwrap();
    let s = site.server();
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(b"GET /big.wasm HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // The socket buffers fill before the reader starts: the server's write
    // must resume on writability, not block its reactor meanwhile.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        s.get("/").status,
        200,
        "the reactor answers others meanwhile"
    );
    let mut bytes = Vec::new();
    c.read_to_end(&mut bytes).unwrap();
    let a = Answer::parse(&bytes);
    assert_eq!(a.header("Content-Type"), Some("application/wasm"));
    assert!(a.body == big, "{} bytes of {}", a.body.len(), big.len());
}

#[test]
fn a_closure_handler_sees_the_request_and_without_one_nothing_changes() {
    let handler = |r: &HttpRequest| {
        let body = format!(
            "{} {} {:?} {:?} {:?}",
            r.method,
            r.path,
            r.query,
            r.host(),
            r.origin()
        );
        HttpResponse::text(200, &body).with_header("Cache-Control", "no-store")
    };
    let s = Server::start(WsConfig {
        http: Some(Arc::new(handler)),
        ..WsConfig::default()
    });
    let a = s.ask(b"GET /token?x=1 HTTP/1.1\r\nHost: h:9\r\nOrigin: http://o\r\n\r\n");
    assert_eq!(
        String::from_utf8(a.body.clone()).unwrap(),
        "GET /token Some(\"x=1\") Some(\"h:9\") Some(\"http://o\")\n"
    );
    assert_eq!(a.header("Cache-Control"), Some("no-store"));
    let plain = Server::start(WsConfig::default());
    let a = plain.get("/");
    assert_eq!(a.status, 400, "no handler: as before, {}", a.head);
}
