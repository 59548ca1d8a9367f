//! `stt serve --web DIR [--demo-tokens]`: plain HTTP on the WebSocket port.
//!
//! `--web DIR` serves the files under `DIR` (`/` is `DIR/index.html`) on the
//! `--ws` port, beside the WebSocket endpoint, with the library's
//! [`StaticFiles`]: a browser can load a page and connect back to the same
//! host and port.
//!
//! `--demo-tokens` answers `GET /token` with a fresh connect token,
//! `{"token":"stt1.…","expires_at":SECONDS}`, to **anyone who asks**. It is
//! for demos and tests **only**: it lets every visitor of the port in. In
//! production the application's backend issues tokens, to the users it has
//! authenticated, and the stt servers only check them. The server prints a
//! warning at start when it is on.
//!
//! The handler takes its tokens from a closure (`Fn() -> Result<String,
//! E>`, the token's text; [`demo_issuer`] makes one from an issuing key),
//! and reads `expires_at` from the token's public part (PROTOCOL.md 14.3).
//! Without `--audience`, `--demo-tokens` makes the server admit tokens for
//! [`DEMO_AUDIENCE`], the name its tokens carry.

use std::fmt::Display;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use stt::token::{IssueError, Issuer, IssuingKey, TokenRequest};
use stt::transport::ws::{HttpHandler, HttpRequest, HttpResponse, StaticFiles, StaticFilesError};

/// The path at which `--demo-tokens` hands out tokens.
pub(crate) const TOKEN_PATH: &str = "/token";

/// The server name `--demo-tokens` admits tokens for when no `--audience`
/// is given.
pub(crate) const DEMO_AUDIENCE: &str = "stt-demo";

/// Lifetime of a demo token: enough to connect, and to reconnect for a
/// while (a client fetches a fresh one for every attempt).
const DEMO_LIFETIME: Duration = Duration::from_secs(600);

/// The flags of `stt serve` for plain HTTP on the WebSocket port.
#[derive(Args, Debug, Default, Clone)]
pub(crate) struct WebArgs {
    /// Serve the files under DIR on the --ws port as plain HTTP (GET and
    /// HEAD; `/` is DIR/index.html), beside the WebSocket endpoint.
    #[arg(long, value_name = "DIR", requires = "ws")]
    pub(crate) web: Option<PathBuf>,
    /// DEMOS AND TESTS ONLY: answer `GET /token` on the --ws port with a
    /// fresh connect token for anyone who asks. In production your backend
    /// issues tokens to users it has authenticated.
    #[arg(long, requires = "ws")]
    pub(crate) demo_tokens: bool,
}

/// The names the server admits tokens for: `audience` (its `--audience`
/// flags), or [`DEMO_AUDIENCE`] alone when that is empty and
/// `--demo-tokens` is on.
pub(crate) fn audience(args: &WebArgs, audience: &[String]) -> Vec<String> {
    if audience.is_empty() && args.demo_tokens {
        vec![DEMO_AUDIENCE.to_owned()]
    } else {
        audience.to_vec()
    }
}

/// A token maker for `--demo-tokens`: each call issues a token under `key`
/// for `audience`, to a new client id (1, 2, …), valid for 10 minutes.
pub(crate) fn demo_issuer(
    key: IssuingKey,
    audience: &[String],
) -> impl Fn() -> Result<String, IssueError> + Send + Sync + 'static {
    let issuer = Issuer::new(key);
    let audience = audience.to_vec();
    let next_client = AtomicU64::new(1);
    move || {
        let client_id = next_client.fetch_add(1, Ordering::Relaxed);
        let request =
            TokenRequest::new(client_id, audience.iter().cloned()).with_lifetime(DEMO_LIFETIME);
        Ok(issuer.issue(&request)?.encode().to_string())
    }
}

/// The `WsConfig::http` handler for `args`: `None` when neither flag is
/// given; an error when `--web DIR` cannot be served. `issue` makes one
/// token (its `stt1.…` text); it is called for each `GET /token`, on the
/// reactor thread. With `--demo-tokens` but no `issue`, `/token` answers
/// 503.
pub(crate) fn http_handler<F, E>(
    args: &WebArgs,
    issue: Option<F>,
) -> Result<Option<Arc<dyn HttpHandler>>, StaticFilesError>
where
    F: Fn() -> Result<String, E> + Send + Sync + 'static,
    E: Display,
{
    if args.web.is_none() && !args.demo_tokens {
        return Ok(None);
    }
    let files = match &args.web {
        Some(dir) => Some(StaticFiles::new(dir)?),
        None => None,
    };
    let tokens: Option<Box<dyn TokenSource>> = if args.demo_tokens {
        eprintln!(
            "WARNING: --demo-tokens: GET {TOKEN_PATH} gives a connect token to anyone who can \
             reach this port. For demos and tests only; in production your backend issues tokens."
        );
        Some(match issue {
            Some(issue) => Box::new(issue) as Box<dyn TokenSource>,
            None => Box::new(|| Err::<String, _>("no token issuer")),
        })
    } else {
        None
    };
    Ok(Some(Arc::new(Web { files, tokens })))
}

/// Makes one token's text.
trait TokenSource: Send + Sync {
    fn issue(&self) -> Result<String, String>;
}

impl<F, E> TokenSource for F
where
    F: Fn() -> Result<String, E> + Send + Sync,
    E: Display,
{
    fn issue(&self) -> Result<String, String> {
        self().map_err(|e| e.to_string())
    }
}

/// The handler: `/token` (with `--demo-tokens`), else the files.
struct Web {
    files: Option<StaticFiles>,
    tokens: Option<Box<dyn TokenSource>>,
}

impl HttpHandler for Web {
    fn handle(&self, request: &HttpRequest) -> HttpResponse {
        if request.path == TOKEN_PATH {
            if let Some(tokens) = &self.tokens {
                return token_response(tokens.as_ref());
            }
        }
        match &self.files {
            Some(files) => files.handle(request),
            None => HttpResponse::not_found(),
        }
    }
}

/// `{"token": …, "expires_at": …}`, never cached; 503 if issuing fails.
fn token_response(tokens: &dyn TokenSource) -> HttpResponse {
    let body = match tokens.issue() {
        Ok(token) => serde_json::json!({
            "token": token,
            "expires_at": expires_at(&token),
        }),
        Err(e) => {
            eprintln!("--demo-tokens: issuing a token failed: {e}");
            let body = serde_json::json!({ "error": "issuing a token failed" });
            return HttpResponse::json(503, body.to_string())
                .with_header("Cache-Control", "no-store");
        }
    };
    HttpResponse::json(200, body.to_string()).with_header("Cache-Control", "no-store")
}

/// The `expires_at` of a token's public part (bytes 17..25 of its decoded
/// text, big-endian seconds since the epoch), if the text is a token.
fn expires_at(token: &str) -> Option<u64> {
    let b64 = token.strip_prefix("stt1.")?;
    let head = base64url_prefix(b64, 25)?;
    let bytes: [u8; 8] = head.get(17..25)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// The first `n` bytes that unpadded base64url `text` encodes, if it
/// encodes that many and its first characters are base64url.
fn base64url_prefix(text: &str, n: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(n + 2);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
        if out.len() >= n {
            out.truncate(n);
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    /// Unpadded base64url, for making token texts.
    fn encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let mut b = [0u8; 3];
            b[..chunk.len()].copy_from_slice(chunk);
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    fn fake_token(expires_at: u64) -> String {
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(&7u64.to_be_bytes());
        bytes.extend_from_slice(&1_700_000_000u64.to_be_bytes());
        bytes.extend_from_slice(&expires_at.to_be_bytes());
        bytes.extend_from_slice(&[9; 40]);
        format!("stt1.{}", encode(&bytes))
    }

    fn get(handler: &dyn HttpHandler, target: &str) -> HttpResponse {
        handler.handle(&HttpRequest::new("GET", target))
    }

    #[test]
    fn expiry_is_read_from_the_public_part() {
        assert_eq!(expires_at(&fake_token(1_700_000_600)), Some(1_700_000_600));
        assert_eq!(expires_at(&fake_token(u64::MAX)), Some(u64::MAX));
        for bad in [
            "",
            "stt1.",
            "stt1.AAAA",
            "stt2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "stt1.!!!!",
        ] {
            assert_eq!(expires_at(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_demo_issuer_makes_fresh_tokens_for_the_demo_audience() {
        let args = WebArgs {
            web: None,
            demo_tokens: true,
        };
        let names = audience(&args, &[]);
        assert_eq!(names, [DEMO_AUDIENCE]);
        assert_eq!(audience(&args, &["eu-1".into()]), ["eu-1"]);
        assert!(audience(&WebArgs::default(), &[]).is_empty());
        let issue = demo_issuer(IssuingKey::from_bytes([3; 32]), &names);
        let (a, b) = (issue().unwrap(), issue().unwrap());
        let (ta, tb) = (
            stt::token::ConnectToken::parse(&a).unwrap(),
            stt::token::ConnectToken::parse(&b).unwrap(),
        );
        assert_eq!((ta.client_id(), tb.client_id()), (1, 2));
        assert_eq!(ta.audience(), [DEMO_AUDIENCE]);
        let expiry = ta
            .expires_at()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        assert_eq!(expires_at(&a), Some(expiry.as_secs()));
    }

    #[test]
    fn no_flag_no_handler() {
        let none = http_handler(
            &WebArgs::default(),
            Some(|| Ok::<_, Infallible>(String::new())),
        );
        assert!(none.unwrap().is_none());
    }

    #[test]
    fn demo_tokens_answer_json_and_nothing_else_is_served_without_web() {
        let args = WebArgs {
            web: None,
            demo_tokens: true,
        };
        let h = http_handler(
            &args,
            Some(|| Ok::<_, Infallible>(fake_token(1_700_000_600))),
        )
        .unwrap()
        .unwrap();
        let r = get(h.as_ref(), "/token");
        assert_eq!(
            (r.status, r.content_type.as_str()),
            (200, "application/json")
        );
        let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(json["token"].as_str().unwrap().starts_with("stt1."));
        assert_eq!(json["expires_at"], 1_700_000_600);
        assert!(r
            .headers
            .contains(&("Cache-Control".into(), "no-store".into())));
        assert_eq!(get(h.as_ref(), "/").status, 404);
        assert_eq!(get(h.as_ref(), "/token/x").status, 404);
    }

    #[test]
    fn a_failing_issuer_gives_503_and_without_demo_tokens_token_is_a_file_path() {
        let dir = std::env::temp_dir().join(format!("stt-cli-web-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), "hi").unwrap();
        let args = WebArgs {
            web: Some(dir.clone()),
            demo_tokens: true,
        };
        let h = http_handler(&args, Some(|| Err::<String, _>("no issuing key")))
            .unwrap()
            .unwrap();
        assert_eq!(get(h.as_ref(), "/token").status, 503);
        assert_eq!(get(h.as_ref(), "/").body, b"hi");
        let files_only = WebArgs {
            demo_tokens: false,
            ..args
        };
        let h = http_handler(&files_only, Some(|| Ok::<_, Infallible>(fake_token(1))))
            .unwrap()
            .unwrap();
        assert_eq!(get(h.as_ref(), "/token").status, 404);
        let missing = WebArgs {
            web: Some(dir.join("nope")),
            demo_tokens: false,
        };
        let e = http_handler(&missing, Some(|| Ok::<_, Infallible>(String::new())));
        assert!(matches!(e, Err(StaticFilesError::Unreadable { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
