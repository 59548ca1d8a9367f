//! A real browser against the real `stt` binary: `stt serve --ws
//! 127.0.0.1:0 --web DIR --demo-tokens` serves a page and tokens, and Debian's
//! Chromium, driven headless by `tests/browser/run.mjs` (playwright-core),
//! loads the page, and the page talks to the server.
//!
//! - `the_harness_loads_a_page_and_opens_a_websocket`: the page, its script
//!   and a plain WebSocket to the stt port (no JS client needed).
//! - `the_js_client_exchanges_messages_with_stt_serve`: the page gets a
//!   token from `/token`, connects with the JS client (`clients/js`, built:
//!   its `dist/`, or `STT_JS_CLIENT_DIR`), has 20 messages echoed and
//!   measures round trips; a screenshot of the example page
//!   (`examples/web`) after a few pings is saved to
//!   `target/tmp/browser-example.png` (or `STT_BROWSER_SCREENSHOT`).
//!
//! Each test **skips, loudly,** when `node`, `tests/browser/node_modules`
//! (`npm ci` there), `/usr/bin/chromium` (`apt-get install -y chromium`) or,
//! for the second, the built JS client is missing — unless
//! `STT_REQUIRE_BROWSER=1` (CI sets it), when it fails instead.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

fn chromium() -> PathBuf {
    std::env::var_os("STT_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Where the built JS client is (a directory with `dist/index.js`).
fn js_client() -> PathBuf {
    std::env::var_os("STT_JS_CLIENT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("clients/js"))
}

/// What the browser test needs and is not here, each with how to get it
/// (empty: all there).
fn missing(need_client: bool) -> Vec<String> {
    let mut missing = Vec::new();
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        missing.push("`node` (Node.js 20+) on the PATH".to_owned());
    }
    if !repo()
        .join("tests/browser/node_modules/playwright-core")
        .is_dir()
    {
        missing.push("tests/browser/node_modules: run `npm ci` in tests/browser".to_owned());
    }
    if !chromium().is_file() {
        missing.push(format!(
            "{}: `apt-get install -y chromium`",
            chromium().display()
        ));
    }
    if need_client && !js_client().join("dist/index.js").is_file() {
        missing.push(format!(
            "the built JS client, {}/dist/index.js: `npm ci && npm run build` there, or set STT_JS_CLIENT_DIR",
            js_client().display()
        ));
    }
    missing
}

/// Whether to run: `false` (after a loud message) when something is
/// missing and `STT_REQUIRE_BROWSER` is not `1`; a failure when it is.
fn ready(test: &str, need_client: bool) -> bool {
    let missing = missing(need_client);
    if missing.is_empty() {
        return true;
    }
    let list = missing.join("\n!!!   - ");
    let required = std::env::var("STT_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "STT_REQUIRE_BROWSER=1 but the browser test {test} cannot run; missing:\n  - {list}"
    );
    eprintln!(
        "\n!!! SKIPPED: browser test {test}: missing\n!!!   - {list}\n!!! (set STT_REQUIRE_BROWSER=1 to make this a failure)\n"
    );
    false
}

/// A scratch directory under the target directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("browser-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `stt serve` on a port of its own, killed on drop.
struct Server {
    child: Child,
    addr: String,
    node_id: String,
}

impl Server {
    /// Serves the example page at `/` and the test page at `/test/`, as a
    /// user would (`--web examples/web --web-mount stt-client=clients/js`),
    /// with the JS client at `/stt-client/`.
    fn start(scratch: &Scratch) -> Server {
        let seeds = scratch.0.join("node.seeds");
        let made = Command::new(env!("CARGO_BIN_EXE_stt"))
            .args(["seeds", "--out"])
            .arg(&seeds)
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_stt"))
            .args([
                "serve",
                "--ws",
                "127.0.0.1:0",
                "--stats-every",
                "0",
                "--web",
            ])
            .arg(repo().join("examples/web"))
            .arg("--web-mount")
            .arg(format!(
                "test={}",
                repo().join("tests/browser/page").display()
            ))
            .arg("--web-mount")
            .arg(format!("stt-client={}", js_client().display()))
            .arg("--demo-tokens")
            .arg("--seed-file")
            .arg(&seeds)
            .env_remove("STT_NODE_SEED")
            .env_remove("STT_SHARED_SEED")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the stt binary runs");
        // Its first lines say its node id and where it listens.
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            // Read to the end, even once nobody listens: a server whose
            // stdout is closed dies of the broken pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut addr, mut node_id) = (None, None);
        while addr.is_none() {
            let line = match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => line,
                Err(e) => {
                    let _ = child.kill();
                    panic!("stt serve did not say where it listens: {e}");
                }
            };
            if let Some(id) = line.strip_prefix("node ") {
                node_id = Some(id.trim().to_owned());
            }
            if let Some(rest) = line.strip_prefix("WebSocket listening on ws://") {
                addr = Some(rest.trim_end_matches('/').to_owned());
            }
        }
        Server {
            child,
            addr: addr.unwrap(),
            node_id: node_id.unwrap_or_default(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `node tests/browser/run.mjs ARGS` (killed after 120 s) and parses
/// the JSON line it prints.
fn run_browser(args: &[&str]) -> serde_json::Value {
    let mut child = Command::new("node")
        .arg(repo().join("tests/browser/run.mjs"))
        .args(args)
        .env("STT_CHROMIUM", chromium())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut text);
        let _ = tx.send(text);
    });
    let text = match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(text) => text,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("run.mjs did not finish within 120 s");
        }
    };
    let status = child.wait().unwrap();
    let line = text.lines().last().unwrap_or("");
    let json: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("run.mjs ({status}) printed no JSON ({e}): {text}"));
    println!("browser: {json:#}");
    json
}

#[test]
fn the_harness_loads_a_page_and_opens_a_websocket() {
    if !ready("the_harness_loads_a_page_and_opens_a_websocket", false) {
        return;
    }
    let scratch = Scratch::new("harness");
    let server = Server::start(&scratch);
    let url = format!("http://{}/test/test.html?mode=plain", server.addr);
    let out = run_browser(&[&url]);
    let result = &out["result"];
    assert_eq!(result["mode"], "plain", "{out:#}");
    assert_eq!(result["ok"], true, "{out:#}");
    assert!(
        result["user_agent"]
            .as_str()
            .is_some_and(|ua| ua.contains("Chrome")),
        "{out:#}"
    );
    assert_eq!(out["page_errors"], serde_json::json!([]), "{out:#}");
}

#[test]
fn the_js_client_exchanges_messages_with_stt_serve() {
    if !ready("the_js_client_exchanges_messages_with_stt_serve", true) {
        return;
    }
    let scratch = Scratch::new("client");
    let server = Server::start(&scratch);
    let shot = std::env::var_os("STT_BROWSER_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-example.png"));
    let test_url = format!("http://{}/test/test.html?n=20", server.addr);
    let example_url = format!("http://{}/", server.addr);
    let shot_arg = shot.to_string_lossy().into_owned();
    let out = run_browser(&[&test_url, "--screenshot", &example_url, &shot_arg]);
    let result = &out["result"];
    assert_eq!(result["mode"], "client", "{out:#}");
    assert_eq!(result["ok"], true, "{out:#}");
    assert_eq!(
        (&result["sent"], &result["echoed"]),
        (&20.into(), &20.into())
    );
    let positive = |key: &str| -> Vec<f64> {
        let values: Vec<f64> = result[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key}: {out:#}"))
            .iter()
            .map(|v| v.as_f64().unwrap_or(f64::NAN))
            .collect();
        assert!(
            values.iter().all(|v| v.is_finite() && *v > 0.0),
            "{key}: {values:?}"
        );
        values
    };
    assert_eq!(positive("rtt_ms").len(), 20);
    assert_eq!(positive("ping_rtt_ms").len(), 5);
    let peer = result["peer_node"].as_str().unwrap_or("");
    assert!(
        !server.node_id.is_empty() && peer.eq_ignore_ascii_case(&server.node_id),
        "the session's peer {peer:?} is the server {:?}",
        server.node_id
    );
    assert!(!result["session_id"].is_null(), "{out:#}");
    assert!(!result["aead"].is_null(), "{out:#}");
    assert_eq!(out["page_errors"], serde_json::json!([]), "{out:#}");
    let pings = out["screenshot"]["pings"].as_u64().unwrap_or(0);
    assert!(
        pings >= 1,
        "the example page measured no round trip: {out:#}"
    );
    assert!(shot.is_file(), "no screenshot at {}", shot.display());
    eprintln!("screenshot of the example page: {}", shot.display());
}
