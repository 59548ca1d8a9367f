//! The `stt` command line: clear errors, seeds, and a short real bench.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The tests run one at a time: the benches measure, and a measurement
/// starved of the machine's two cores by the other tests' servers reports
/// nothing.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn stt(args: &[&str]) -> (bool, String, String) {
    run(Command::new(env!("CARGO_BIN_EXE_stt"))
        .args(args)
        .env_remove("STT_NODE_SEED")
        .env_remove("STT_SHARED_SEED"))
}

/// Runs `command` to its end, or kills it after 20 s (a server that should
/// have refused to start): success, standard output, standard error.
fn run(command: &mut Command) -> (bool, String, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the stt binary runs");
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = r.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = err.join().unwrap();
    if status.is_none() {
        err.push_str("\n(killed: still running after 20 s)");
    }
    (
        status.is_some_and(|s| s.success()),
        out.join().unwrap(),
        err,
    )
}

#[test]
fn help_lists_every_command() {
    let _serial = serial();
    let (ok, out, _) = stt(&["--help"]);
    assert!(ok);
    for cmd in ["serve", "send", "bench", "seeds", "token", "issuer-key"] {
        assert!(out.contains(cmd), "{out}");
    }
}

#[test]
fn serve_and_send_refuse_to_run_without_seeds() {
    let _serial = serial();
    let (ok, _, err) = stt(&["serve", "--udp", "127.0.0.1:0"]);
    assert!(!ok);
    assert!(
        err.contains("stt seeds") && err.contains("STT_NODE_SEED"),
        "{err}"
    );
    let (ok, _, err) = stt(&["send", "--udp", "127.0.0.1:9", "--message", "x"]);
    assert!(!ok);
    assert!(err.contains("seed"), "{err}");
}

#[test]
fn bad_flags_are_clear_errors() {
    let _serial = serial();
    let (ok, _, err) = stt(&["bench", "--size", "8"]);
    assert!(!ok && err.contains("--size"), "{err}");
    let (ok, _, err) = stt(&["bench", "--transport", "carrier-pigeon"]);
    assert!(!ok && err.contains("carrier-pigeon"), "{err}");
    let (ok, _, err) = stt(&[
        "serve",
        "--node-seed",
        "zz",
        "--shared-seed",
        "00",
        "--udp",
        "127.0.0.1:0",
    ]);
    assert!(!ok && err.contains("hex"), "{err}");
}

#[test]
fn seeds_makes_a_usable_pair() {
    let _serial = serial();
    let (ok, out, _) = stt(&["seeds"]);
    assert!(ok);
    let lines: Vec<&str> = out.lines().filter(|l| l.contains('=')).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines
        .iter()
        .all(|l| l.split('=').nth(1).unwrap().trim().len() == 64));
}

#[test]
fn a_short_bench_reports_real_figures_as_json() {
    let _serial = serial();
    let (ok, out, err) = stt(&[
        "bench",
        "--transport",
        "udp",
        "--duration",
        "0.3",
        "--warmup",
        "0",
        "--rate",
        "2000",
        "--json",
        "--reactors",
        "1",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    let r = &v[0];
    assert_eq!(r["transport"], "udp");
    assert!(r["throughput_msgs_per_s"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["latency_received"].as_u64().unwrap() > 0, "{r}");
    assert!(r["p50_us"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn a_bench_against_a_server_echoing_from_its_reactors_works_too() {
    let _serial = serial();
    let (ok, out, err) = stt(&[
        "bench",
        "--transport",
        "all",
        "--duration",
        "0.3",
        "--warmup",
        "0",
        "--rate",
        "2000",
        "--json",
        "--reactors",
        "1",
        "--echo-in-reactor",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    for (i, transport) in ["udp", "ws"].iter().enumerate() {
        let r = &v[i];
        assert_eq!(r["transport"], *transport);
        assert!(r["throughput_msgs_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["latency_received"].as_u64().unwrap() > 0, "{r}");
    }
    // Aimed at a remote server, the flag has no local server to apply to.
    let (ok, _, err) = stt(&["bench", "--server", "127.0.0.1:9", "--echo-in-reactor"]);
    assert!(!ok);
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn serve_echoes_what_send_sends() {
    let _serial = serial();
    serve_and_send(&[]);
}

#[test]
fn serve_echoes_from_its_reactors_too() {
    let _serial = serial();
    serve_and_send(&["--echo-in-reactor"]);
}

/// Starts `stt serve` with `extra` flags, sends it a message with
/// `stt send`, and checks the echo.
fn serve_and_send(extra: &[&str]) {
    let mut server = Server::start(extra);
    assert_eq!(
        server.echoing_in_reactor,
        extra.contains(&"--echo-in-reactor"),
        "serve says how it echoes"
    );
    let (ok, out, err) = server.send(&["--message", "hello over the cli"]);
    server.stop();
    assert!(ok, "{err}");
    assert!(out.contains("identical"), "{out}");
}

/// A `stt serve` on loopback UDP, and a client seed file for its network.
struct Server {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    addr: String,
    node_id: String,
    echoing_in_reactor: bool,
    client_seeds: std::path::PathBuf,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        use std::io::{BufRead, BufReader};
        let seeds = tempfile_with(&stt(&["seeds"]).1);
        // The client needs the same shared seed, its own node seed.
        let shared = std::fs::read_to_string(&seeds)
            .unwrap()
            .lines()
            .find(|l| l.starts_with("shared_seed"))
            .unwrap()
            .to_owned();
        let client_seeds = tempfile_with(&format!(
            "{}\n{shared}\n",
            stt(&["seeds"]).1.replace("shared_seed", "ignored")
        ));
        let mut child = Command::new(env!("CARGO_BIN_EXE_stt"))
            .args([
                "serve",
                "--udp",
                "127.0.0.1:0",
                "--stats-every",
                "0",
                "--reactors",
                "1",
                "--seed-file",
            ])
            .arg(&seeds)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut echoing_in_reactor, mut node_id) = (false, None);
        let addr = loop {
            let line = lines.next().expect("serve prints its address").unwrap();
            echoing_in_reactor |= line == "echoing from the reactors";
            if let Some(id) = line.strip_prefix("node ") {
                node_id = Some(id.to_owned());
            }
            if let Some(a) = line.strip_prefix("UDP listening on ") {
                break a.to_owned();
            }
        };
        let node_id = node_id.expect("serve prints its node id first");
        assert_eq!(node_id.len(), 64, "{node_id}");
        Server {
            child,
            lines,
            addr,
            node_id,
            echoing_in_reactor,
            client_seeds,
        }
    }

    /// Runs `stt send` against this server with `args` added.
    fn send(&self, args: &[&str]) -> (bool, String, String) {
        let mut all = vec![
            "send",
            "--udp",
            &self.addr,
            "--seed-file",
            self.client_seeds.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        stt(&all)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn send_with_peer_node_opens_only_with_that_node() {
    let _serial = serial();
    let server = Server::start(&[]);
    let (ok, out, err) = server.send(&["--message", "pinned", "--peer-node", &server.node_id]);
    assert!(ok, "{err}");
    assert!(out.contains("identical"), "{out}");
    let wrong = "ab".repeat(32);
    let (ok, out, err) = server.send(&["--message", "pinned", "--peer-node", &wrong]);
    assert!(!ok, "{out}");
    assert!(!out.contains("echo"), "nothing was sent: {out}");
    assert!(
        err.contains(&wrong) && err.contains(&server.node_id),
        "the error names both ids: {err}"
    );
    let (ok, _, err) = server.send(&["--message", "x", "--peer-node", "abcd"]);
    assert!(!ok && err.contains("64 hex digits"), "{err}");
}

#[test]
fn serve_prints_peer_payloads_escaped() {
    let _serial = serial();
    let mut server = Server::start(&["--print"]);
    // An escape sequence that clears the screen, a fake line, invalid
    // UTF-8 and a right-to-left override.
    let payload = b"hi\x1b[2J\nfake line\r\xff\xe2\x80\xae!";
    let file = tempfile_with("");
    std::fs::write(&file, payload).unwrap();
    let (ok, _, err) = server.send(&["--file", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    server.stop();
    let printed: Vec<String> = server.lines.by_ref().map_while(Result::ok).collect();
    let line = printed
        .iter()
        .find(|l| l.starts_with("message on session"))
        .unwrap_or_else(|| panic!("serve --print prints the message: {printed:?}"));
    assert!(
        line.ends_with(r#"(22 bytes): "hi\u{1b}[2J\nfake line\r\xff\u{202e}!""#),
        "{line}"
    );
    for l in &printed {
        assert!(!l.starts_with("fake line"), "{printed:?}");
        assert!(
            !l.contains(['\x1b', '\r', '\u{202e}']),
            "raw control characters: {printed:?}"
        );
    }
}

#[cfg(unix)]
#[test]
fn seeds_out_writes_a_file_only_its_owner_reads() {
    let _serial = serial();
    use std::os::unix::fs::PermissionsExt as _;
    let path = tempfile_with("");
    std::fs::remove_file(&path).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let (ok, out, err) = stt(&["seeds", "--out", path.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        !out.contains("seed ="),
        "the seeds go to the file only: {out}"
    );
    assert_eq!(mode(&path), 0o600);
    let first = std::fs::read_to_string(&path).unwrap();
    assert_eq!(first.lines().filter(|l| l.contains(" = ")).count(), 2);
    // An existing file stays as it is without --force …
    let (ok, _, err) = stt(&["seeds", "--out", path.to_str().unwrap()]);
    assert!(!ok && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
    // … and is replaced by a private one with it, whatever its mode was.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, _, err) = stt(&["seeds", "--out", path.to_str().unwrap(), "--force"]);
    assert!(ok, "{err}");
    assert_eq!(mode(&path), 0o600);
    assert_ne!(std::fs::read_to_string(&path).unwrap(), first);
    // The file works as a seed file.
    let (ok, _, err) = stt(&["serve", "--seed-file", path.to_str().unwrap()]);
    assert!(!ok && err.contains("nothing to serve"), "{err}");
}

/// The two hex seeds of a fresh seed file.
fn fresh_seeds() -> (String, String) {
    let out = stt(&["seeds"]).1;
    let value = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap()
            .trim()
            .to_owned()
    };
    (value("node_seed ="), value("shared_seed ="))
}

#[test]
fn seeds_on_the_command_line_draw_a_warning() {
    let _serial = serial();
    let (node, shared) = fresh_seeds();
    // `serve` without an address fails right after reading its seeds.
    let (ok, _, err) = stt(&["serve", "--node-seed", &node, "--shared-seed", &shared]);
    assert!(!ok && err.contains("nothing to serve"), "{err}");
    assert!(
        err.contains("warning") && err.contains("--seed-file") && err.contains("ps"),
        "{err}"
    );
    assert!(!err.contains(&node) && !err.contains(&shared), "{err}");
    // From the environment: no warning.
    let (ok, _, err) = run(Command::new(env!("CARGO_BIN_EXE_stt"))
        .arg("serve")
        .env("STT_NODE_SEED", &node)
        .env("STT_SHARED_SEED", &shared));
    assert!(
        !ok && err.contains("nothing to serve") && !err.contains("warning"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn a_seed_file_open_to_others_is_refused() {
    let _serial = serial();
    use std::os::unix::fs::PermissionsExt as _;
    let (node, shared) = fresh_seeds();
    let path = tempfile_with(&format!("node_seed = {node}\nshared_seed = {shared}\n"));
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let (ok, _, err) = stt(&["serve", "--udp", "127.0.0.1:0", "--seed-file"]
            .into_iter()
            .chain([path.to_str().unwrap()])
            .collect::<Vec<_>>());
        assert!(!ok, "mode {mode:o} accepted");
        assert!(
            err.contains("chmod 600") && err.contains(&format!("{mode:04o}")),
            "{err}"
        );
        assert!(!err.contains(&node) && !err.contains(&shared), "{err}");
    }
}

#[test]
fn the_seed_file_can_come_from_standard_input() {
    let _serial = serial();
    use std::io::{BufRead as _, BufReader, Write as _};
    let text = stt(&["seeds"]).1;
    let node_id = |stdin_text: Option<&str>| {
        let path = tempfile_with(&text);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stt"));
        cmd.args(["serve", "--udp", "127.0.0.1:0", "--stats-every", "0"])
            .args(["--reactors", "1", "--seed-file"])
            .stdout(Stdio::piped())
            .stdin(Stdio::piped());
        match stdin_text {
            Some(_) => cmd.arg("-"),
            None => cmd.arg(&path),
        };
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if let Some(t) = stdin_text {
            stdin.write_all(t.as_bytes()).unwrap();
        }
        drop(stdin);
        let line = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .next()
            .expect("serve prints its node id")
            .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        line
    };
    let from_stdin = node_id(Some(&text));
    assert!(from_stdin.starts_with("node "), "{from_stdin}");
    assert_eq!(from_stdin, node_id(None));
}

#[test]
fn seeds_stay_out_of_help_and_errors() {
    let _serial = serial();
    let (node, shared) = fresh_seeds();
    for command in ["serve", "send", "bench"] {
        let (_, help, _) = run(Command::new(env!("CARGO_BIN_EXE_stt"))
            .args([command, "--help"])
            .env("STT_NODE_SEED", &node)
            .env("STT_SHARED_SEED", &shared));
        assert!(help.contains("--seed-file"), "{help}");
        assert!(!help.contains(&node) && !help.contains(&shared), "{help}");
    }
    // A seed that is not hex: the error names the seed, not its value.
    let bad = format!("{}zz", &node[2..]);
    let path = tempfile_with(&format!("node_seed = {bad}\nshared_seed = {shared}\n"));
    for args in [
        vec![
            "serve",
            "--udp",
            "127.0.0.1:0",
            "--node-seed",
            &bad,
            "--shared-seed",
            &shared,
        ],
        vec![
            "serve",
            "--udp",
            "127.0.0.1:0",
            "--seed-file",
            path.to_str().unwrap(),
        ],
    ] {
        let (ok, _, err) = stt(&args);
        assert!(!ok && err.contains("node_seed must be hex"), "{err}");
        assert!(!err.contains(&bad) && !err.contains(&shared), "{err}");
    }
    // Too short: the library's error gives the length only.
    let (ok, _, err) = stt(&[
        "serve",
        "--udp",
        "127.0.0.1:0",
        "--node-seed",
        "abcd",
        "--shared-seed",
        &shared,
    ]);
    assert!(!ok && err.contains("node_seed"), "{err}");
    assert!(!err.contains("abcd") && !err.contains(&shared), "{err}");
}

/// A temporary file with `text`, readable by its owner only (as a seed
/// file must be).
fn tempfile_with(text: &str) -> std::path::PathBuf {
    use std::io::Write as _;
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let p = std::env::temp_dir().join(format!(
        "stt-cli-test-{}-{}.seeds",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&p)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    p
}

#[test]
fn tokens_from_a_separate_issuing_key_admit_a_seedless_client() {
    let _serial = serial();
    let dir = std::env::temp_dir().join(format!("stt-cli-issuer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("issuer.key");
    let key = key.to_str().unwrap();
    let (ok, out, err) = stt(&["issuer-key", "--out", key]);
    assert!(ok && out.contains("mode 0600"), "{out}{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (again, _, err) = stt(&["issuer-key", "--out", key]);
    assert!(!again && err.contains("--force"), "{err}");
    let mut server = Server::start(&["--audience", "cli-test", "--issuer-key-file", key]);
    let issue = |audience: &str| {
        let (ok, out, err) = stt(&[
            "token",
            "--issuer-key-file",
            key,
            "--audience",
            audience,
            "--client-id",
            "9",
        ]);
        assert!(ok, "{err}");
        out.trim().to_owned()
    };
    let good = issue("cli-test");
    assert!(good.starts_with("stt1."), "{good}");
    let (ok, out, err) = stt(&[
        "send",
        "--udp",
        &server.addr,
        "--token",
        &good,
        "--message",
        "hi from a token",
    ]);
    assert!(ok && out.contains("identical"), "{out}{err}");
    let (ok, _, err) = stt(&[
        "send",
        "--udp",
        &server.addr,
        "--token",
        &issue("elsewhere"),
        "--message",
        "no",
    ]);
    assert!(!ok && err.contains("wrong audience"), "{err}");
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
