//! The server side of the WebSocket upgrade (RFC 6455 §4.2), over any
//! non-blocking `Read`: the request is read into a buffer that grows only as
//! bytes come (at most [`MAX_REQUEST`]), parsed with tungstenite's parser,
//! checked, and answered — `101 Switching Protocols`, or an HTTP error that
//! says what was wrong, so that proxies and monitoring see it:
//!
//! | request | answer |
//! |---|---|
//! | not `GET`, not HTTP/1.1, no `Host`, `Upgrade`, `Connection: Upgrade` or `Sec-WebSocket-Version`, a missing or malformed `Sec-WebSocket-Key`, unparsable | 400 Bad Request |
//! | an `Origin` outside `WsConfig::allowed_origins` | 403 Forbidden |
//! | a `Sec-WebSocket-Version` other than 13 | 426 Upgrade Required, with `Sec-WebSocket-Version: 13` (§4.4) |
//! | a request head over [`MAX_REQUEST`] bytes, or too many header lines | 431 Request Header Fields Too Large |
//!
//! With an [`HttpHandler`](super::HttpHandler) in `WsConfig::http`, a
//! complete head that does not ask for a WebSocket is handed to it instead
//! (`http.rs`), and its answer sent.
//!
//! (503 for the connection caps is answered at accept, before any byte is
//! read: see `listen.rs`.) tungstenite's own server handshake answers none
//! of these (it just closes), and it keeps 8 KiB per upgrading connection
//! from the first byte; this one keeps what the client sent.

use std::io::{self, Read};

use tungstenite::handshake::derive_accept_key;
use tungstenite::handshake::machine::TryParse;
use tungstenite::handshake::server::Request;

use super::http::{self, Head};
use super::WsConfig;

/// Largest request head read (request line and headers). 8 KiB, as nginx's
/// and Node's defaults: a browser's upgrade is well under 2 KiB.
pub(crate) const MAX_REQUEST: usize = 8 * 1024;

/// An upgrade refused with an HTTP error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejection {
    /// The HTTP status.
    pub(crate) status: u16,
    /// Why, in the response's body and the logs.
    pub(crate) reason: &'static str,
}

impl Rejection {
    const fn new(status: u16, reason: &'static str) -> Self {
        Rejection { status, reason }
    }

    /// The whole HTTP response.
    pub(crate) fn response(&self) -> Vec<u8> {
        let phrase = match self.status {
            400 => "Bad Request",
            403 => "Forbidden",
            426 => "Upgrade Required",
            431 => "Request Header Fields Too Large",
            _ => "Service Unavailable",
        };
        let extra = if self.status == 426 {
            "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n"
        } else {
            ""
        };
        format!(
            "HTTP/1.1 {} {phrase}\r\n{extra}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}\r\n",
            self.status,
            self.reason.len() + 2,
            self.reason
        )
        .into_bytes()
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.reason)
    }
}

/// What a complete request led to.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Upgrade: the `101` response, and the bytes that came after the
    /// request (the client's first frames), for the WebSocket.
    Accept { response: Vec<u8>, tail: Vec<u8> },
    /// Refuse with this error.
    Refuse(Rejection),
    /// A plain HTTP request, answered by the `WsConfig::http` handler: send
    /// `response` (of this status), then close.
    Serve { status: u16, response: Vec<u8> },
}

/// An upgrade request being read.
#[derive(Debug, Default)]
pub(crate) struct Upgrade {
    buf: Vec<u8>,
}

impl Upgrade {
    /// Reads what `stream` has; `Ok(None)` until the request is complete
    /// (the stream would block). End of stream before that is an error.
    pub(crate) fn read<S: Read>(
        &mut self,
        stream: &mut S,
        config: &WsConfig,
    ) -> io::Result<Option<Verdict>> {
        let mut chunk = [0u8; 1024];
        loop {
            let n = match stream.read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e),
            };
            self.buf.extend_from_slice(&chunk[..n]);
            if let Some(handler) = &config.http {
                match http::parse(&self.buf) {
                    Head::Partial if self.buf.len() > MAX_REQUEST => {
                        return Ok(Some(Verdict::Refuse(TOO_LARGE)))
                    }
                    Head::Partial => continue,
                    Head::TooManyHeaders => return Ok(Some(Verdict::Refuse(TOO_LARGE))),
                    Head::Plain { end, .. } if end > MAX_REQUEST => {
                        return Ok(Some(Verdict::Refuse(TOO_LARGE)))
                    }
                    Head::Plain {
                        request, has_body, ..
                    } => {
                        self.buf = Vec::new();
                        let (status, response) = http::answer(&**handler, &request, has_body);
                        return Ok(Some(Verdict::Serve { status, response }));
                    }
                    // An upgrade, or malformed: as without a handler.
                    Head::Upgrade => {}
                }
            }
            // Parsed again as it grows (at most 8 KiB): garbage is refused
            // at its first bad byte, not when a blank line comes.
            let parsed = Request::try_parse(&self.buf);
            match parsed {
                Ok(Some((end, _))) if end > MAX_REQUEST => {
                    return Ok(Some(Verdict::Refuse(TOO_LARGE)))
                }
                Ok(Some((end, request))) => {
                    let tail = self.buf.split_off(end);
                    self.buf = Vec::new();
                    return Ok(Some(verdict(parsed_request(Ok(request)), tail, config)));
                }
                Ok(None) if self.buf.len() > MAX_REQUEST => {
                    return Ok(Some(Verdict::Refuse(TOO_LARGE)))
                }
                Ok(None) => {}
                Err(e) => return Ok(Some(verdict(parsed_request(Err(e)), Vec::new(), config))),
            }
        }
    }
}

const TOO_LARGE: Rejection = Rejection::new(431, "request header fields too large");

/// The request, or the answer to a request that does not parse.
fn parsed_request(parsed: tungstenite::Result<Request>) -> Result<Request, Rejection> {
    use tungstenite::error::ProtocolError;
    match parsed {
        Ok(request) => Ok(request),
        Err(tungstenite::Error::Capacity(_)) => Err(TOO_LARGE),
        Err(tungstenite::Error::Protocol(ProtocolError::WrongHttpMethod)) => {
            Err(Rejection::new(400, "the upgrade must be a GET"))
        }
        Err(tungstenite::Error::Protocol(ProtocolError::WrongHttpVersion)) => {
            Err(Rejection::new(400, "the upgrade needs HTTP/1.1"))
        }
        Err(_) => Err(Rejection::new(400, "malformed HTTP request")),
    }
}

/// Checks a parsed request and makes the answer.
fn verdict(request: Result<Request, Rejection>, tail: Vec<u8>, config: &WsConfig) -> Verdict {
    let request = match request {
        Ok(r) => r,
        Err(r) => return Verdict::Refuse(r),
    };
    match accept_key(&request, config) {
        Ok(key) => {
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key)
            );
            Verdict::Accept {
                response: response.into_bytes(),
                tail,
            }
        }
        Err(r) => Verdict::Refuse(r),
    }
}

/// The request's `Sec-WebSocket-Key`, once every RFC 6455 §4.2.1 check and
/// the Origin check pass.
fn accept_key<'r>(request: &'r Request, config: &WsConfig) -> Result<&'r [u8], Rejection> {
    let headers = request.headers();
    let has_token = |name: &str, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    if !headers.contains_key("Host") {
        return Err(Rejection::new(400, "no Host header"));
    }
    if !has_token("Upgrade", "websocket") {
        return Err(Rejection::new(
            400,
            "not a WebSocket upgrade (Upgrade: websocket)",
        ));
    }
    if !has_token("Connection", "Upgrade") {
        return Err(Rejection::new(
            400,
            "not a WebSocket upgrade (Connection: Upgrade)",
        ));
    }
    match headers.get("Sec-WebSocket-Version") {
        None => return Err(Rejection::new(400, "no Sec-WebSocket-Version header")),
        Some(v) if v.as_bytes().trim_ascii() != b"13" => {
            return Err(Rejection::new(
                426,
                "unsupported WebSocket version; this server speaks 13",
            ))
        }
        Some(_) => {}
    }
    let key = headers
        .get("Sec-WebSocket-Key")
        .map(|k| k.as_bytes().trim_ascii())
        .filter(|k| is_nonce(k))
        .ok_or(Rejection::new(
            400,
            "missing or malformed Sec-WebSocket-Key",
        ))?;
    if let Some(origin) = headers.get("Origin") {
        if !config.origin_allowed(origin.as_bytes().trim_ascii()) {
            return Err(Rejection::new(403, "origin not allowed"));
        }
    }
    Ok(key)
}

/// Whether `key` is the base64 of 16 bytes (RFC 6455 §4.1: 24 characters,
/// the last two `=`).
fn is_nonce(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /stt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    fn answer(request: &str, config: &WsConfig) -> Verdict {
        let mut up = Upgrade::default();
        let mut bytes = request.as_bytes();
        up.read(&mut bytes, config).unwrap().expect("complete")
    }

    fn status(request: &str, config: &WsConfig) -> u16 {
        match answer(request, config) {
            Verdict::Accept { .. } => 101,
            Verdict::Refuse(r) => r.status,
            Verdict::Serve { status, .. } => status,
        }
    }

    #[test]
    fn a_good_request_is_answered_with_the_rfc_accept_key() {
        let request = format!("{GOOD}Origin: https://Game.example\r\n\r\n\x02\x01");
        match answer(&request, &WsConfig::default()) {
            Verdict::Accept { response, tail } => {
                let text = String::from_utf8(response).unwrap();
                assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
                // RFC 6455 §1.3's example.
                assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
                assert_eq!(tail, b"\x02\x01", "what follows the request is kept");
            }
            Verdict::Refuse(r) => panic!("{r}"),
            Verdict::Serve { status, .. } => panic!("served {status}"),
        }
    }

    #[test]
    fn each_kind_of_bad_request_gets_its_status() {
        let c = WsConfig::default();
        let swap = |from: &str, to: &str| format!("{}\r\n", GOOD.replace(from, to));
        assert_eq!(status(&swap("GET", "POST"), &c), 400);
        assert_eq!(status(&swap("HTTP/1.1", "HTTP/1.0"), &c), 400);
        assert_eq!(status(&swap("Host: x\r\n", ""), &c), 400);
        assert_eq!(status(&swap("Upgrade: websocket\r\n", ""), &c), 400);
        assert_eq!(status(&swap("keep-alive, Upgrade", "keep-alive"), &c), 400);
        assert_eq!(
            status(
                &swap("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                &c
            ),
            400
        );
        assert_eq!(
            status(&swap("dGhlIHNhbXBsZSBub25jZQ==", "short=="), &c),
            400
        );
        assert_eq!(status(&swap("Sec-WebSocket-Version: 13\r\n", ""), &c), 400);
        assert_eq!(status(&swap("Version: 13", "Version: 8"), &c), 426);
        assert_eq!(status("HELLO\r\n\r\n", &c), 400);
        let long = format!("{GOOD}X-Long: {}\r\n\r\n", "a".repeat(MAX_REQUEST));
        assert_eq!(status(&long, &c), 431);
        let many: String = (0..200).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(status(&format!("{GOOD}{many}\r\n"), &c), 431);
    }

    #[test]
    fn the_426_names_the_version_spoken() {
        let r = Rejection::new(426, "unsupported");
        let text = String::from_utf8(r.response()).unwrap();
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
    }

    #[test]
    fn origins_outside_the_list_get_403_and_no_origin_passes() {
        let c = WsConfig {
            allowed_origins: Some(vec!["https://game.example/".into()]),
            ..WsConfig::default()
        };
        assert_eq!(
            status(&format!("{GOOD}Origin: https://GAME.example\r\n\r\n"), &c),
            101
        );
        assert_eq!(
            status(&format!("{GOOD}Origin: https://evil.example\r\n\r\n"), &c),
            403
        );
        assert_eq!(status(&format!("{GOOD}Origin: null\r\n\r\n"), &c), 403);
        assert_eq!(status(&format!("{GOOD}\r\n"), &c), 101);
    }

    #[test]
    fn with_an_http_handler_plain_requests_are_served_and_upgrades_go_on() {
        let handler = |_: &crate::transport::ws::HttpRequest| {
            crate::transport::ws::HttpResponse::text(200, "page")
        };
        let c = WsConfig {
            http: Some(std::sync::Arc::new(handler)),
            ..WsConfig::default()
        };
        assert_eq!(status("GET / HTTP/1.1\r\nHost: x\r\n\r\n", &c), 200);
        assert_eq!(status("GET / HTTP/1.0\r\n\r\n", &c), 200);
        assert_eq!(status("HEAD /a HTTP/1.1\r\n\r\n", &c), 200);
        assert_eq!(status("POST / HTTP/1.1\r\n\r\n", &c), 405);
        assert_eq!(status(&format!("{GOOD}\r\n"), &c), 101);
        assert_eq!(status(&swap_version(), &c), 426);
        assert_eq!(status("HELLO\r\n\r\n", &c), 400);
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_REQUEST));
        assert_eq!(status(&long, &c), 431);
        // Without a handler, as ever.
        let plain = WsConfig::default();
        assert_eq!(status("GET / HTTP/1.1\r\nHost: x\r\n\r\n", &plain), 400);
        assert_eq!(status("POST / HTTP/1.1\r\n\r\n", &plain), 400);
    }

    fn swap_version() -> String {
        format!("{}\r\n", GOOD.replace("Version: 13", "Version: 8"))
    }

    #[test]
    fn a_request_trickling_in_is_kept_only_as_large_as_it_is() {
        let mut up = Upgrade::default();
        let c = WsConfig::default();
        let mut first = &b"GET /stt HTTP/1.1\r\n"[..];
        // A `&[u8]` reads to its end, then reports end of stream.
        assert!(up.read(&mut first, &c).is_err());
        assert!(up.buf.capacity() < 1024, "{}", up.buf.capacity());
    }
}
