//! `stt-link`: the link emulator as a program, in front of any UDP server.
//!
//! ```text
//! stt-link --listen 127.0.0.1:7000 --to 127.0.0.1:9000 --delay 10ms --jitter 1ms \
//!          --loss 0.01 --rate 100mbit --queue 256KiB
//! ```
//!
//! Every link flag applies to both directions; `--forward-only` /
//! `--backward-only` restrict them to one. Statistics go to stderr every
//! `--stats-every` and when the program stops (Ctrl-C, SIGTERM or
//! `--duration`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use stt_link::{parse, GilbertElliott, JitterKind, LinkConfig, LinkDirection, Relay};

#[derive(Debug, Parser)]
#[command(
    name = "stt-link",
    version,
    about = "A UDP link emulator: relays datagrams between clients and one server \
             with delay, jitter, loss, duplication, reordering and a rate limit"
)]
struct Args {
    /// Address to listen on for clients.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The server to relay to.
    #[arg(long)]
    to: SocketAddr,
    /// One-way delay, e.g. 10ms (a 20 ms round trip with the default
    /// symmetric link).
    #[arg(long, value_parser = parse::duration, default_value = "0")]
    delay: Duration,
    /// Jitter: half-width of a uniform draw, or the standard deviation with
    /// --jitter-dist normal. Never reorders (see --reorder).
    #[arg(long, value_parser = parse::duration, default_value = "0")]
    jitter: Duration,
    /// How jitter is drawn.
    #[arg(long, value_enum, default_value_t = Dist::Uniform)]
    jitter_dist: Dist,
    /// Loss probability, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Gilbert–Elliott burst loss instead of --loss: P,R[,LOSS_BAD[,LOSS_GOOD]]
    /// (enter a burst with probability P, leave it with R).
    #[arg(long, value_parser = parse::burst_loss)]
    burst_loss: Option<GilbertElliott>,
    /// Duplication probability, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Probability that a datagram is held back by --reorder-delay, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Extra delay of a reordered datagram.
    #[arg(long, value_parser = parse::duration, default_value = "5ms")]
    reorder_delay: Duration,
    /// Rate limit, e.g. 100mbit (bit, kbit, mbit, gbit); none by default.
    #[arg(long, value_parser = parse::rate)]
    rate: Option<u64>,
    /// Queue of the rate-limited link, e.g. 256KiB (drop-tail).
    #[arg(long, value_parser = parse::size, default_value = "256KiB")]
    queue: usize,
    /// Apply the link flags to client → server only (the other way perfect).
    #[arg(long, conflicts_with = "backward_only")]
    forward_only: bool,
    /// Apply the link flags to server → client only.
    #[arg(long)]
    backward_only: bool,
    /// Seed of the random draws.
    #[arg(long, default_value_t = 0x5EED)]
    seed: u64,
    /// Print statistics this often (0 for only at the end).
    #[arg(long, value_parser = parse::duration, default_value = "5s")]
    stats_every: Duration,
    /// Stop after this long (default: run until Ctrl-C).
    #[arg(long, value_parser = parse::duration)]
    duration: Option<Duration>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Dist {
    Uniform,
    Normal,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let direction = LinkDirection {
        delay: args.delay,
        jitter: args.jitter,
        jitter_kind: match args.jitter_dist {
            Dist::Uniform => JitterKind::Uniform,
            Dist::Normal => JitterKind::Normal,
        },
        loss: args.loss,
        burst_loss: args.burst_loss,
        duplicate: args.duplicate,
        reorder: args.reorder,
        reorder_delay: args.reorder_delay,
        rate: args.rate,
        queue: args.queue,
    };
    let mut config = LinkConfig::symmetric(direction).with_seed(args.seed);
    if args.forward_only {
        config.backward = LinkDirection::default();
    }
    if args.backward_only {
        config.forward = LinkDirection::default();
    }
    config.listen = args.listen;
    let relay = match Relay::start(config.clone(), args.to) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stt-link: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            eprintln!("stt-link: cannot catch signal {signal}: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!("stt-link: {} -> {}", relay.local_addr(), args.to);
    println!("forward:  {}", describe(&config.forward));
    println!("backward: {}", describe(&config.backward));
    let start = Instant::now();
    let mut next_stats = start + args.stats_every;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        let now = Instant::now();
        if args.duration.is_some_and(|d| now - start >= d) {
            break;
        }
        if !args.stats_every.is_zero() && now >= next_stats {
            eprintln!("[{:.0} s]\n{}", (now - start).as_secs_f64(), relay.stats());
            next_stats = now + args.stats_every;
        }
    }
    eprintln!(
        "stt-link: stopped after {:.1} s\n{}",
        start.elapsed().as_secs_f64(),
        relay.stats()
    );
    ExitCode::SUCCESS
}

fn describe(d: &LinkDirection) -> String {
    let loss = match &d.burst_loss {
        Some(ge) => format!(
            "burst loss p={} r={} (bad {}, good {}; mean {:.4})",
            ge.p,
            ge.r,
            ge.loss_bad,
            ge.loss_good,
            ge.mean_loss()
        ),
        None => format!("loss {}", d.loss),
    };
    let rate = match d.rate {
        Some(r) => format!("rate {:.3} Mbit/s, queue {} B", r as f64 / 1e6, d.queue),
        None => "no rate limit".into(),
    };
    format!(
        "delay {:?} ± {:?} ({:?}), {loss}, duplicate {}, reorder {} (+{:?}), {rate}",
        d.delay, d.jitter, d.jitter_kind, d.duplicate, d.reorder, d.reorder_delay
    )
}
