//! stt-perf: the end-to-end benchmark harness.
//!
//! Runs the same workload against stt and its peers on this machine, over
//! real loopback sockets, several times interleaved (so that noise hits every
//! contender alike), and writes Markdown tables with medians, spreads,
//! ratios and the CPU each contender burned to `perf/RESULTS.md`.
//!
//! ```text
//! cargo run --release -p stt-perf -- udp|latency|scaling|crypto|ws|attacks|all
//!     [--seconds S] [--runs N] [--size BYTES] [--pings N] [--only TEXT] [--out FILE | --no-out]
//! cargo run --release -p stt-perf -- channels [--rounds N] [--seconds S] [--mib N]
//!     [--bulk-cap S] [--msg-rate N] [--rate 100mbit] [--only TEXT]
//! ```
//!
//! - `udp` ([`udp`]): one UDP sender → one receiver: stt (sealed) against
//!   std, tokio and quinn-udp GSO/GRO loops (unsealed) and quinn datagrams
//!   (sealed), with the one-core AES seal ceiling for scale.
//! - `latency` ([`latency`]): UDP ping-pong, 64 B: blocking std (the
//!   floor), stt, quinn datagrams.
//! - `scaling` ([`scaling`]): stt over UDP with 1, 16 and 256 sessions.
//! - `crypto` ([`crypto`]): the one-core AEAD ceiling (seal and open).
//! - `ws` ([`ws`]): stt over WebSocket (sealed) against tokio-tungstenite
//!   (unsealed, and sealed over rustls) and fastwebsockets (unsealed):
//!   throughput and round-trip latency, 64 B and 64 KiB.
//! - `attacks` ([`attacks`]): attacks on a node on loopback, each with an
//!   honest session pinging through it: what it saw, and the process's
//!   memory before, during and after. Not part of `all`.
//! - `channels` ([`channels`]): reliable and unreliable channels over a
//!   20 ms link emulated in-process (`stt-link`) at 0%, 1% and 5% loss and
//!   over loopback: quinn streams/datagrams, renet, and the slot for stt's
//!   channels. Not part of `all`.
//! - `all`: every workload above but `attacks` and `channels`, in the order
//!   above.
//!
//! Each workload's section is kept in `results/<workload>.md` beside the
//! results file, which is rebuilt from every section present (see
//! [`common::write_results`]).

mod attacks;
mod channels;
mod common;
mod crypto;
mod latency;
mod quic;
mod scaling;
mod udp;
mod ws;

use std::path::Path;

pub struct Args {
    pub seconds: f64,
    /// Whether `--seconds` was given (`attacks` defaults to 3 s, not 2).
    pub seconds_given: bool,
    pub runs: usize,
    /// Whether `--runs` (or `--rounds`) was given (`channels` defaults to 3).
    pub runs_given: bool,
    /// Message size of the `udp`, `scaling` and `crypto` workloads.
    pub size: usize,
    /// Round trips of each `latency` and `ws` latency run.
    pub pings: usize,
    /// `ws` only: run just the contenders and sizes whose label
    /// ("<contender>, <size>") contains this (a profiling aid).
    pub only: Option<String>,
    pub out: Option<String>,
    /// `channels`: MiB of each reliable bulk transfer.
    pub mib: u64,
    /// `channels`: seconds after which a bulk transfer is cut short.
    pub bulk_cap: f64,
    /// `channels`: messages per second of the latency test.
    pub msg_rate: u32,
    /// `channels`: rate limit of the emulated link, bit/s.
    pub link_rate: Option<u64>,
}

const USAGE: &str =
    "usage: stt-perf udp|latency|scaling|crypto|ws|attacks|channels|all [--seconds S] \
                     [--runs N | --rounds N] [--size BYTES (udp, scaling, crypto)] \
                     [--pings N (latency, ws)] [--only TEXT (ws, channels)] \
                     [--mib N] [--bulk-cap S] [--msg-rate N] [--rate RATE (channels)] \
                     [--out FILE | --no-out]";

fn parse_args() -> Result<(String, Args), String> {
    let mut it = std::env::args().skip(1);
    let workload = it.next().unwrap_or_else(|| "udp".into());
    let mut args = Args {
        seconds: 2.0,
        seconds_given: false,
        runs: 5,
        runs_given: false,
        size: 1200,
        pings: 20_000,
        only: None,
        out: Some("perf/RESULTS.md".into()),
        mib: 32,
        bulk_cap: 8.0,
        msg_rate: 1000,
        link_rate: None,
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => {
                args.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?;
                args.seconds_given = true;
            }
            "--runs" | "--rounds" => {
                args.runs = value()?.parse().map_err(|e| format!("{flag}: {e}"))?;
                args.runs_given = true;
            }
            "--mib" => args.mib = value()?.parse().map_err(|e| format!("--mib: {e}"))?,
            "--bulk-cap" => {
                args.bulk_cap = value()?.parse().map_err(|e| format!("--bulk-cap: {e}"))?
            }
            "--msg-rate" => {
                args.msg_rate = value()?.parse().map_err(|e| format!("--msg-rate: {e}"))?
            }
            "--rate" => {
                args.link_rate =
                    Some(stt_link::parse::rate(&value()?).map_err(|e| format!("--rate: {e}"))?)
            }
            "--size" => args.size = value()?.parse().map_err(|e| format!("--size: {e}"))?,
            "--pings" => args.pings = value()?.parse().map_err(|e| format!("--pings: {e}"))?,
            "--only" => args.only = Some(value()?),
            "--out" => args.out = Some(value()?),
            "--no-out" => args.out = None,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.runs == 0 || args.seconds <= 0.0 || !(16..=1400).contains(&args.size) {
        return Err("need --runs >= 1, --seconds > 0, --size 16..=1400".into());
    }
    if args.pings == 0 {
        return Err("need --pings >= 1".into());
    }
    if args.mib == 0
        || args.mib > 4096
        || args.bulk_cap.is_nan()
        || args.bulk_cap <= 0.0
        || args.msg_rate == 0
    {
        return Err("need --mib 1..=4096, --bulk-cap > 0, --msg-rate >= 1".into());
    }
    if args.link_rate == Some(0) {
        return Err("need --rate > 0".into());
    }
    Ok((workload, args))
}

fn main() {
    let (workload, args) = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let todo: &[&str] = match workload.as_str() {
        "udp" => &["udp"],
        "ws" => &["ws"],
        "latency" => &["latency"],
        "crypto" => &["crypto"],
        "scaling" => &["scaling"],
        "attacks" => &["attacks"],
        "channels" => &["channels"],
        "all" => &["udp", "latency", "scaling", "crypto", "ws"],
        other => {
            eprintln!("error: unknown workload {other} (available: udp, latency, scaling, crypto, ws, attacks, channels, all)\n{USAGE}");
            std::process::exit(2);
        }
    };
    let mut sections = Vec::new();
    for (i, name) in todo.iter().enumerate() {
        let report = match *name {
            "udp" => udp::workload(&args),
            "latency" => latency::workload(&args),
            "crypto" => crypto::workload(&args),
            "scaling" => scaling::workload(&args),
            "attacks" => attacks::workload(&args),
            "channels" => channels::workload(&args),
            _ => ws::workload(&args),
        };
        if i > 0 {
            println!();
        }
        println!("{report}");
        sections.push((*name, report));
    }
    if let Some(path) = &args.out {
        if let Err(e) = common::write_results(Path::new(path), &sections) {
            eprintln!("could not write {path}: {e}");
        }
    }
}
