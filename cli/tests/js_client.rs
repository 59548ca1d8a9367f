//! The JavaScript client's own suite (`clients/js/test/`, `node --test`)
//! against this build's `stt` binary: its vectors, and a real `stt serve`
//! (token handshake, 10,000 messages both ways, a 1 MiB message, a server
//! restart ridden out by reconnection, expired and refused tokens).
//!
//! It needs Node.js 20+ and the package installed and built (`npm ci && npm
//! run build` in `clients/js`, as `.ci/run` does). Without them it **skips,
//! loudly**, unless `STT_REQUIRE_JS=1` (CI sets it), when it fails instead.

use std::path::{Path, PathBuf};
use std::process::Command;

fn package() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .join("clients/js")
}

#[test]
fn the_js_client_suite_passes_against_this_stt() {
    let dir = package();
    let mut missing = Vec::new();
    let node = Command::new("node").arg("--version").output();
    if !node.as_ref().is_ok_and(|o| o.status.success()) {
        missing.push("`node` (Node.js 20+) on the PATH");
    }
    if !dir.join("node_modules/@noble/curves").exists() {
        missing.push("clients/js/node_modules (`npm ci` in clients/js)");
    }
    if !dir.join("dist/index.js").exists() {
        missing.push("clients/js/dist (`npm run build` in clients/js)");
    }
    if !missing.is_empty() {
        let list = missing.join("\n  - ");
        assert!(
            std::env::var("STT_REQUIRE_JS").map_or(true, |v| v != "1"),
            "STT_REQUIRE_JS=1 but the JS client suite cannot run; missing:\n  - {list}"
        );
        eprintln!(
            "\n!!! SKIPPED: the JS client suite: missing\n!!!   - {list}\n!!! (set STT_REQUIRE_JS=1 to make this a failure)\n"
        );
        return;
    }
    let tests: Vec<PathBuf> = std::fs::read_dir(dir.join("test"))
        .expect("clients/js/test")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".test.mjs"))
        .collect();
    assert!(!tests.is_empty(), "no test files in clients/js/test");
    let out = Command::new("node")
        .current_dir(&dir)
        .arg("--experimental-websocket")
        .arg("--test")
        .args(&tests)
        .env("STT_BIN", env!("CARGO_BIN_EXE_stt"))
        .output()
        .expect("running node --test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The summary lines of the TAP report (`# pass N`, `# fail N`, …).
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("# ") && !l.starts_with("# Subtest"))
        .collect();
    eprintln!("node --test: {}", summary.join(" | "));
    assert!(
        out.status.success(),
        "the JS client suite failed:\n{stdout}\n{stderr}"
    );
    assert!(
        summary
            .iter()
            .any(|l| l.starts_with("# pass ") && l != &"# pass 0"),
        "no JS test ran:\n{stdout}"
    );
    assert!(summary.contains(&"# fail 0"), "{stdout}");
}
