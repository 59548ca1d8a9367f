//! Plain HTTP requests on the WebSocket port: the opt-in hook
//! ([`HttpHandler`], set in [`WsConfig::http`](super::WsConfig::http)),
//! the request it sees ([`HttpRequest`]), the answer it gives
//! ([`HttpResponse`]), and how a request head that is not an upgrade is
//! recognised and answered.
//!
//! The server reads a request head as it reads an upgrade (at most
//! 8 KiB, within `handshake_timeout`). A head that asks for a WebSocket
//! (`Upgrade: websocket`) goes on as an upgrade; any other, when a handler is
//! set, is answered by it — `GET` and `HEAD` only (others get `405 Method Not
//! Allowed`), with no request body — and the connection is closed after the
//! response (`Connection: close`). The response is written without blocking,
//! like the `101` of an upgrade, from the handler's buffer.
//!
//! The handler runs on the transport's reactor thread, while every other
//! connection of that reactor waits: it must be quick (no network calls; a
//! small file read is fine). A handler that panics is answered with `500`,
//! and the connection closed; the reactor goes on.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Header lines accepted in a request head (as tungstenite's parser).
const MAX_HEADERS: usize = 124;

/// Answers plain HTTP requests on the WebSocket port.
///
/// Implemented for every `Fn(&HttpRequest) -> HttpResponse + Send + Sync`,
/// and by [`StaticFiles`](super::StaticFiles). It only ever sees `GET` and
/// `HEAD` requests; for `HEAD`, the transport sends the response's head
/// without its body.
pub trait HttpHandler: Send + Sync {
    /// The response to `request`. Runs on the reactor thread: be quick.
    fn handle(&self, request: &HttpRequest) -> HttpResponse;
}

impl<F> HttpHandler for F
where
    F: Fn(&HttpRequest) -> HttpResponse + Send + Sync,
{
    fn handle(&self, request: &HttpRequest) -> HttpResponse {
        self(request)
    }
}

impl fmt::Debug for dyn HttpHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HttpHandler")
    }
}

/// A plain (not upgrade) HTTP request, as an [`HttpHandler`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpRequest {
    /// `GET` or `HEAD`.
    pub method: String,
    /// The path of the request target, as sent: still percent-encoded,
    /// without the query. Not checked in any way: a handler that maps it
    /// to files must refuse `..` and the like (as [`StaticFiles`](super::StaticFiles) does).
    pub path: String,
    /// What followed the first `?` of the target, if anything did.
    pub query: Option<String>,
    /// Every header line, in order, its name as sent; a value that is not
    /// UTF-8 is converted lossily.
    pub headers: Vec<(String, String)>,
}

impl HttpRequest {
    /// A request for `target` (`/path?query`), without headers: for tests
    /// of handlers.
    pub fn new(method: &str, target: &str) -> Self {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q.to_owned())),
            None => (target, None),
        };
        HttpRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            query,
            headers: Vec::new(),
        }
    }

    /// The first header named `name` (ASCII case-insensitively), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    /// The `Host` header.
    pub fn host(&self) -> Option<&str> {
        self.header("Host")
    }

    /// The `Origin` header (browsers send it on cross-origin requests).
    pub fn origin(&self) -> Option<&str> {
        self.header("Origin")
    }
}

/// What an [`HttpHandler`] answers. The transport adds `Content-Length`,
/// `Connection: close` and `X-Content-Type-Options: nosniff`; a header
/// of the handler's whose name is not an HTTP token, whose value holds a
/// control character, or which the transport sets itself, is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpResponse {
    /// The status, 200..=599 (anything else is sent as `500`).
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: String,
    /// Further headers (`Cache-Control`, `Location`, …).
    pub headers: Vec<(String, String)>,
    /// The body (left out for `HEAD`, its length still announced).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A response with this status, content type and body.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        HttpResponse {
            status,
            content_type: content_type.to_owned(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A `text/plain` response (a line break is added to `text`).
    pub fn text(status: u16, text: &str) -> Self {
        Self::new(status, "text/plain; charset=utf-8", format!("{text}\n"))
    }

    /// An `application/json` response with this JSON text as its body.
    pub fn json(status: u16, json: impl Into<Vec<u8>>) -> Self {
        Self::new(status, "application/json", json)
    }

    /// `404 Not Found`.
    pub fn not_found() -> Self {
        Self::text(404, "not found")
    }

    /// This response with one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The response on the wire; without the body if `head_only`.
    pub(crate) fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let valid = (200..=599).contains(&self.status) && is_value(&self.content_type);
        if !valid {
            return HttpResponse::text(500, "the HTTP handler gave an invalid response")
                .to_bytes(head_only);
        }
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            if is_token(name) && is_value(value) && !is_reserved(name) {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// The standard reason phrase of `status`, or `""`.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Whether `name` is an HTTP token (RFC 9110 §5.6.2).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `value` can be a header value: no control characters but tab.
fn is_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// The headers the transport writes itself.
fn is_reserved(name: &str) -> bool {
    [
        "content-length",
        "content-type",
        "connection",
        "transfer-encoding",
        "x-content-type-options",
    ]
    .iter()
    .any(|r| name.eq_ignore_ascii_case(r))
}

/// A request head, as far as it was read.
#[derive(Debug)]
pub(crate) enum Head {
    /// Not complete yet.
    Partial,
    /// More than [`MAX_HEADERS`] header lines.
    TooManyHeaders,
    /// Complete, and it asks for a WebSocket; or malformed: the upgrade
    /// path takes it (and answers a malformed one as it always did).
    Upgrade,
    /// Complete, and a plain request, `end` bytes long.
    Plain {
        /// The head's length, blank line included.
        end: usize,
        /// The request.
        request: HttpRequest,
        /// It announces a body (`Content-Length` above 0, or
        /// `Transfer-Encoding`).
        has_body: bool,
    },
}

/// Reads the head at the start of `buf`.
pub(crate) fn parse(buf: &[u8]) -> Head {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let end = match req.parse(buf) {
        Ok(httparse::Status::Partial) => return Head::Partial,
        Ok(httparse::Status::Complete(end)) => end,
        Err(httparse::Error::TooManyHeaders) => return Head::TooManyHeaders,
        Err(_) => return Head::Upgrade,
    };
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Head::Upgrade;
    };
    let has_token = |name: &str, token: &[u8]| {
        req.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case(name)
                && h.value
                    .split(|b| *b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
        })
    };
    if has_token("Upgrade", b"websocket") {
        return Head::Upgrade;
    }
    let has_body = req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("Transfer-Encoding")
            || (h.name.eq_ignore_ascii_case("Content-Length")
                && h.value.trim_ascii().iter().any(|b| *b != b'0'))
    });
    let mut request = HttpRequest::new(method, target);
    request.headers = req
        .headers
        .iter()
        .map(|h| {
            let value = String::from_utf8_lossy(h.value).into_owned();
            (h.name.to_owned(), value)
        })
        .collect();
    Head::Plain {
        end,
        request,
        has_body,
    }
}

/// The answer to a plain request: its status and the bytes to send.
pub(crate) fn answer(
    handler: &dyn HttpHandler,
    request: &HttpRequest,
    has_body: bool,
) -> (u16, Vec<u8>) {
    let head_only = request.method == "HEAD";
    let response = if !(request.method == "GET" || head_only) {
        HttpResponse::text(405, "only GET and HEAD are served here")
            .with_header("Allow", "GET, HEAD")
    } else if has_body {
        HttpResponse::text(400, "request bodies are not accepted")
    } else {
        match catch_unwind(AssertUnwindSafe(|| handler.handle(request))) {
            Ok(response) => response,
            Err(_) => {
                tracing::error!(path = %request.path, "the HTTP handler panicked");
                HttpResponse::text(500, "the HTTP handler failed")
            }
        }
    };
    let status = if (200..=599).contains(&response.status) {
        response.status
    } else {
        500
    };
    (status, response.to_bytes(head_only))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(head: &str) -> (HttpRequest, bool) {
        match parse(head.as_bytes()) {
            Head::Plain {
                end,
                request,
                has_body,
            } => {
                assert_eq!(end, head.len());
                (request, has_body)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_plain_get_is_parsed_with_its_query_and_headers() {
        let (r, body) =
            plain("GET /a/b.js?x=1&y HTTP/1.1\r\nHost: h:1\r\nOrigin: http://o\r\n\r\n");
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/a/b.js"));
        assert_eq!(r.query.as_deref(), Some("x=1&y"));
        assert_eq!((r.host(), r.origin()), (Some("h:1"), Some("http://o")));
        assert_eq!(r.header("HOST"), Some("h:1"));
        assert!(!body);
        let (_, body) = plain("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n");
        assert!(body);
        let (_, body) = plain("GET / HTTP/1.0\r\nContent-Length: 00\r\n\r\n");
        assert!(!body);
    }

    #[test]
    fn upgrades_partial_and_malformed_heads_are_told_apart() {
        let up = "GET / HTTP/1.1\r\nUpgrade: foo, WebSocket\r\n\r\n";
        assert!(matches!(parse(up.as_bytes()), Head::Upgrade));
        assert!(matches!(parse(b"GET / HTTP/1.1\r\nHo"), Head::Partial));
        assert!(matches!(parse(b"\x00\x01garbage\r\n\r\n"), Head::Upgrade));
        let many: String = (0..200).map(|i| format!("X-{i}: y\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(parse(head.as_bytes()), Head::TooManyHeaders));
    }

    #[test]
    fn responses_are_well_formed_whatever_the_handler_says() {
        let r = HttpResponse::new(200, "text/html", "hi")
            .with_header("Cache-Control", "no-cache")
            .with_header("X-Evil", "a\r\nSet-Cookie: x=1")
            .with_header("Bad Name", "v")
            .with_header("content-length", "99");
        let text = String::from_utf8(r.to_bytes(false)).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("\r\nContent-Length: 2\r\n"));
        assert!(text.contains("\r\nCache-Control: no-cache\r\n"));
        assert!(!text.contains("Set-Cookie") && !text.contains("Bad Name"));
        assert!(!text.contains(": 99"));
        assert!(text.ends_with("\r\n\r\nhi"));
        let head = String::from_utf8(r.to_bytes(true)).unwrap();
        assert!(head.ends_with("\r\n\r\n") && head.contains("Content-Length: 2"));
        for bad in [
            HttpResponse::new(101, "text/plain", ""),
            HttpResponse::new(200, "text/plain\r\nX: y", ""),
        ] {
            let text = String::from_utf8(bad.to_bytes(false)).unwrap();
            assert!(text.starts_with("HTTP/1.1 500 "), "{text}");
        }
    }

    #[test]
    fn other_methods_bodies_and_panics_get_errors() {
        let ok = |_: &HttpRequest| HttpResponse::text(200, "ok");
        let boom = |_: &HttpRequest| -> HttpResponse { panic!("handler bug") };
        let post = HttpRequest::new("POST", "/");
        let (status, bytes) = answer(&ok, &post, false);
        assert_eq!(status, 405);
        assert!(String::from_utf8(bytes)
            .unwrap()
            .contains("\r\nAllow: GET, HEAD\r\n"));
        assert_eq!(answer(&ok, &HttpRequest::new("GET", "/"), true).0, 400);
        assert_eq!(answer(&boom, &HttpRequest::new("GET", "/"), false).0, 500);
        let (status, bytes) = answer(&ok, &HttpRequest::new("HEAD", "/"), false);
        assert_eq!(status, 200);
        assert!(bytes.ends_with(b"\r\n\r\n"));
    }
}
