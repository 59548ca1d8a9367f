//! Network namespaces that a test creates for itself (`ip netns`, root):
//! a private loopback, optionally impaired with `tc netem`. Removed on drop.
//! Where the machine cannot make one, `create` says why, and the test
//! writes SKIPPING with that reason straight to stderr (past the test
//! harness's capture, so that a skip shows in a plain `cargo test`).

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

/// A network namespace of this test process.
pub struct Netns {
    name: String,
}

impl Netns {
    /// A namespace with its loopback up and, with `netem`, a `tc netem`
    /// qdisc on it (e.g. `["loss", "10%", "delay", "50ms"]`); or why not.
    pub fn create(what: &str, netem: Option<&[&str]>) -> Result<Netns, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "stt-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run(&["ip", "netns", "add", &name])?;
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        if let Some(netem) = netem {
            let mut args = vec!["tc", "qdisc", "add", "dev", "lo", "root", "netem"];
            args.extend_from_slice(netem);
            ns.exec(&args)?;
        }
        Ok(ns)
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Result<(), String> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Runs `f` on a thread inside the namespace: sockets made there belong
    /// to it (wherever they are used later), and threads started there
    /// inherit it — a node started in `f` lives in the namespace.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("the namespace's file");
            use std::os::fd::AsRawFd;
            // SAFETY: setns on a valid, open namespace file descriptor; it
            // changes only this thread's network namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("the thread in the namespace")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
