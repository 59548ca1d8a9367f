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
    /// Also serve DIR under /NAME/ (repeatable), e.g. `--web-mount
    /// stt-client=clients/js` for the built JS client beside a page.
    #[arg(long, value_name = "NAME=DIR", value_parser = parse_mount, requires = "ws")]
    pub(crate) web_mount: Vec<(String, PathBuf)>,
    /// DEMOS AND TESTS ONLY: answer `GET /token` on the --ws port with a
    /// fresh connect token for anyone who asks. In production your backend
    /// issues tokens to users it has authenticated.
    #[arg(long, requires = "ws")]
    pub(crate) demo_tokens: bool,
}

/// `NAME=DIR` of `--web-mount`: a name without slashes or dots, and a
/// directory.
fn parse_mount(s: &str) -> Result<(String, PathBuf), String> {
    let (name, dir) = s
        .split_once('=')
        .ok_or("--web-mount takes NAME=DIR (served under /NAME/)")?;
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if name.is_empty() || !name.chars().all(plain) {
        return Err(format!(
            "--web-mount: the name {name:?} must be letters, digits, '-' or '_'"
        ));
    }
    Ok((name.to_owned(), PathBuf::from(dir)))
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
    if args.web.is_none() && args.web_mount.is_empty() && !args.demo_tokens {
        return Ok(None);
    }
    let files = match &args.web {
        Some(dir) => Some(StaticFiles::new(dir)?),
        None => None,
    };
    let mounts = args
        .web_mount
        .iter()
        .map(|(name, dir)| Ok((format!("/{name}/"), StaticFiles::new(dir)?)))
        .collect::<Result<Vec<_>, StaticFilesError>>()?;
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
    Ok(Some(Arc::new(Web {
        files,
        mounts,
        tokens,
    })))
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

/// The handler: `/token` (with `--demo-tokens`), the mounts, else the
/// files.
struct Web {
    files: Option<StaticFiles>,
    /// (`/NAME/`, its files).
    mounts: Vec<(String, StaticFiles)>,
    tokens: Option<Box<dyn TokenSource>>,
}

impl HttpHandler for Web {
    fn handle(&self, request: &HttpRequest) -> HttpResponse {
        if request.path == TOKEN_PATH {
            if let Some(tokens) = &self.tokens {
                return token_response(tokens.as_ref());
            }
        }
        for (prefix, files) in &self.mounts {
            if let Some(rest) = request.path.strip_prefix(&prefix[..prefix.len() - 1]) {
                // `/NAME/x` is `/x` of the mount (and `/NAME` its index).
                let inner =
                    HttpRequest::new(&request.method, if rest.is_empty() { "/" } else { rest });
                if rest.is_empty() || rest.starts_with('/') {
                    return files.handle(&inner);
                }
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

/// The `expires_at` of a token's text (seconds since the epoch), if the
/// text is a token.
fn expires_at(token: &str) -> Option<u64> {
    let token = stt::token::ConnectToken::parse(token).ok()?;
    let since = token.expires_at().duration_since(std::time::UNIX_EPOCH);
    since.ok().map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    /// A real token expiring at `expires_at` (issued a minute before).
    fn token_until(expires_at: u64) -> String {
        let issuer = Issuer::new(IssuingKey::from_bytes([4; 32]));
        let request = TokenRequest::new(7, ["t"]).with_lifetime(Duration::from_secs(60));
        let token = issuer
            .issue_at(&request, expires_at - 60, [1; 16], [2; 32])
            .unwrap();
        token.encode().to_string()
    }

    fn get(handler: &dyn HttpHandler, target: &str) -> HttpResponse {
        handler.handle(&HttpRequest::new("GET", target))
    }

    #[test]
    fn expiry_is_read_from_the_public_part() {
        assert_eq!(expires_at(&token_until(1_700_000_600)), Some(1_700_000_600));
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
            web_mount: Vec::new(),
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
            web_mount: Vec::new(),
            demo_tokens: true,
        };
        let h = http_handler(
            &args,
            Some(|| Ok::<_, Infallible>(token_until(1_700_000_600))),
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
            web_mount: Vec::new(),
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
        let h = http_handler(
            &files_only,
            Some(|| Ok::<_, Infallible>(token_until(1_700_000_000))),
        )
        .unwrap()
        .unwrap();
        assert_eq!(get(h.as_ref(), "/token").status, 404);
        let missing = WebArgs {
            web: Some(dir.join("nope")),
            web_mount: Vec::new(),
            demo_tokens: false,
        };
        let e = http_handler(&missing, Some(|| Ok::<_, Infallible>(String::new())));
        assert!(matches!(e, Err(StaticFilesError::Unreadable { .. })));
        // A mount serves its directory under /NAME/, and only there.
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        std::fs::write(dir.join("lib/x.js"), "x").unwrap();
        let mounted = WebArgs {
            web: None,
            web_mount: vec![parse_mount(&format!("lib={}", dir.join("lib").display())).unwrap()],
            demo_tokens: false,
        };
        let h = http_handler(&mounted, None::<fn() -> Result<String, Infallible>>)
            .unwrap()
            .unwrap();
        assert_eq!(get(h.as_ref(), "/lib/x.js").body, b"x");
        assert_eq!(get(h.as_ref(), "/libx.js").status, 404);
        assert_eq!(get(h.as_ref(), "/lib/../index.html").status, 400);
        assert_eq!(get(h.as_ref(), "/x.js").status, 404);
        assert!(parse_mount("../up=/tmp").is_err());
        assert!(parse_mount("noequals").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
