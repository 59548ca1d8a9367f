//! The `stt` command line: clear errors, seeds, and a short real bench.

use std::process::Command;

fn stt(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stt"))
        .args(args)
        .env_remove("STT_NODE_SEED")
        .env_remove("STT_SHARED_SEED")
        .output()
        .expect("the stt binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_command() {
    let (ok, out, _) = stt(&["--help"]);
    assert!(ok);
    for cmd in ["serve", "send", "bench", "seeds"] {
        assert!(out.contains(cmd), "{out}");
    }
}

#[test]
fn serve_and_send_refuse_to_run_without_seeds() {
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
    serve_and_send(&[]);
}

#[test]
fn serve_echoes_from_its_reactors_too() {
    serve_and_send(&["--echo-in-reactor"]);
}

/// Starts `stt serve` with `extra` flags, sends it a message with
/// `stt send`, and checks the echo.
fn serve_and_send(extra: &[&str]) {
    use std::io::{BufRead, BufReader};
    let seeds = tempfile_with(&stt(&["seeds"]).1);
    let client_seeds = tempfile_with(&stt(&["seeds"]).1.replace("shared_seed", "ignored"));
    // The client needs the same shared seed, its own node seed.
    let shared = std::fs::read_to_string(&seeds)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("shared_seed"))
        .unwrap()
        .to_owned();
    std::fs::write(
        &client_seeds,
        format!(
            "{}\n{shared}\n",
            std::fs::read_to_string(&client_seeds).unwrap()
        ),
    )
    .unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_stt"))
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
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let mut echoing_in_reactor = false;
    let addr = loop {
        let line = lines.next().expect("serve prints its address").unwrap();
        echoing_in_reactor |= line == "echoing from the reactors";
        if let Some(a) = line.strip_prefix("UDP listening on ") {
            break a.to_owned();
        }
    };
    assert_eq!(
        echoing_in_reactor,
        extra.contains(&"--echo-in-reactor"),
        "serve says how it echoes"
    );
    let (ok, out, err) = stt(&[
        "send",
        "--udp",
        &addr,
        "--message",
        "hello over the cli",
        "--seed-file",
        client_seeds.to_str().unwrap(),
    ]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(ok, "{err}");
    assert!(out.contains("identical"), "{out}");
}

fn tempfile_with(text: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let p = std::env::temp_dir().join(format!(
        "stt-cli-test-{}-{}.seeds",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&p, text).unwrap();
    p
}
