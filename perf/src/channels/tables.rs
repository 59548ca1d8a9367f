//! The `channels` section: one table per test, rows by path and contender,
//! medians over rounds with min – max, ratios against quinn (of medians,
//! then round by round), and the relay's own counters per path.

use std::fmt::Write as _;

use super::{
    renet, Contender, Outcome, Path, Record, Records, Test, BIG, GRACE, ONE_WAY, QUIET, SMALL,
};
use crate::common::{machine, median, min_max, paired, ratio_cell};
use crate::Args;

/// One line for the progress output.
pub fn describe(outcome: &Result<Outcome, String>) -> String {
    match outcome {
        Err(e) => format!("not measured: {e}"),
        Ok(Outcome::Bulk(b)) => format!(
            "{:.1} Mbit/s, {:.1} of {:.1} MiB in {:.2} s",
            b.mbits(),
            b.delivered as f64 / MIB,
            b.target as f64 / MIB,
            b.seconds
        ),
        Ok(Outcome::Latency(l)) => format!(
            "one-way p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; {} of {} delivered",
            l.p50, l.p99, l.max, l.delivered, l.sent
        ),
        Ok(Outcome::Unreliable(u)) => format!(
            "{:.0} delivered/s; accepted {}, refused {}, delivered {} ({:.1}%)",
            u.rate,
            u.accepted,
            u.refused,
            u.delivered,
            percent(u.delivered, u.accepted)
        ),
    }
}

const MIB: f64 = (1 << 20) as f64;

fn percent(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 * 100.0 / b as f64
    }
}

/// `median (min – max)` of `v` with `digits` decimals.
fn spread(v: &[f64], digits: usize) -> String {
    let (lo, hi) = min_max(v);
    format!(
        "{:.digits$} ({lo:.digits$} – {hi:.digits$})",
        median(v.to_vec())
    )
}

/// The per-round values `f` picks from each round's outcome (`None` where
/// the round failed).
fn by_round(records: &[Record], f: impl Fn(&Outcome) -> Option<f64>) -> Vec<Option<f64>> {
    records
        .iter()
        .map(|r| r.outcome.as_ref().ok().and_then(&f))
        .collect()
}

fn present(v: &[Option<f64>]) -> Vec<f64> {
    v.iter().flatten().copied().collect()
}

pub fn report(
    args: &Args,
    rounds: usize,
    seconds: f64,
    paths: &[Path],
    tests: &[Test],
    records: &Records,
) -> String {
    let quinn = Contender::ALL
        .iter()
        .position(|c| *c == Contender::Quinn)
        .unwrap_or(0);
    let mut notes: Vec<String> = Vec::new();
    let mut out = String::new();
    for (ti, test) in tests.iter().enumerate() {
        let mut table = String::new();
        match test {
            Test::Bulk { bytes, cap } => {
                let _ = writeln!(
                    table,
                    "### Reliable bulk: {:.0} MiB in {BIG}-byte messages (cap {:.0} s)\n\n\
                     Goodput from the first send to the last byte received; a transfer still \
                     running at the cap counts what arrived in order by then over the cap.\n\n\
                     | path | contender | goodput Mbit/s (median) | min – max | vs quinn | \
                     delivered MiB (median) | finished before the cap |\n|---|---|---|---|---|---|---|",
                    *bytes as f64 / MIB,
                    cap.as_secs_f64()
                );
            }
            Test::Latency { rate, duration } => {
                let _ = writeln!(
                    table,
                    "### Reliable-ordered latency: {SMALL}-byte messages, {rate}/s for {:.0} s\n\n\
                     One-way latency from the sender's timestamp (taken as the message is handed \
                     to the library) to the receiving application, in ms: median over rounds \
                     (min – max). Lost: sent but not delivered within {:.0} s of the last send, \
                     all rounds together.\n\n\
                     | path | contender | p50 ms | p99 ms | max ms | p50 / p99 vs quinn | \
                     delivered / sent (all rounds) | lost |\n|---|---|---|---|---|---|---|---|",
                    duration.as_secs_f64(),
                    GRACE.as_secs_f64()
                );
            }
            Test::Unreliable { duration } => {
                let _ = writeln!(
                    table,
                    "### Unreliable at saturation: {BIG}-byte messages, as fast as the API takes \
                     them, {:.0} s\n\n\
                     Delivered messages/s is what the receiving application got, first to last \
                     arrival. Accepted: sends the API took; refused: sends it turned down; lost: \
                     accepted but never delivered (dropped by the library's own buffers, the \
                     link or the receiver). Medians over rounds.\n\n\
                     | path | contender | delivered msg/s (median) | min – max | vs quinn | \
                     accepted | refused | delivered % of accepted | lost |\n\
                     |---|---|---|---|---|---|---|---|---|",
                    duration.as_secs_f64()
                );
            }
        }
        for (pi, path) in paths.iter().enumerate() {
            for (ci, contender) in Contender::ALL.iter().enumerate() {
                let recs = &records[pi][ti][ci];
                for r in recs {
                    if let Err(e) = &r.outcome {
                        let note = format!(
                            "{}, {}, {}: {e}",
                            contender.label(),
                            path.label(),
                            Test::KINDS[ti]
                        );
                        if !notes.contains(&note) {
                            notes.push(note);
                        }
                    }
                }
                if recs.iter().all(|r| r.outcome.is_err()) {
                    continue;
                }
                let row = row(
                    test,
                    &records[pi][ti][ci],
                    &records[pi][ti][quinn],
                    ci == quinn,
                );
                let _ = writeln!(
                    table,
                    "| {} | {} | {row} |",
                    path.label(),
                    contender.label()
                );
            }
        }
        out.push('\n');
        out.push_str(&table);
    }
    // The relay's own counters: what the link really did.
    let mut relay = String::from(
        "\nRelay counters per path (every run on the path, every contender): datagrams the \
         emulator dropped as loss, of those it received, each way; overload drops (the relay \
         not keeping up, not part of the emulated link) should be 0.\n\n",
    );
    for (pi, path) in paths.iter().enumerate() {
        if !path.emulated {
            continue;
        }
        let (mut fl, mut fr, mut bl, mut br, mut over) = (0, 0, 0, 0, 0);
        for r in records[pi].iter().flatten().flatten() {
            if let Some(s) = &r.relay {
                fl += s.forward.dropped_loss;
                fr += s.forward.received;
                bl += s.backward.dropped_loss;
                br += s.backward.received;
                over += s.forward.dropped_overload + s.backward.dropped_overload;
            }
        }
        let _ = writeln!(
            relay,
            "- {}: forward {fl} of {fr} ({:.2}%), backward {bl} of {br} ({:.2}%), overload drops {over}",
            path.label(),
            percent(fl, fr),
            percent(bl, br)
        );
    }
    let detail = stt_detail(tests, paths, records);
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(
            "\n**Not measured**:\n\n{}\n",
            notes
                .iter()
                .map(|n| format!("- {n}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    };
    let rate = match args.link_rate {
        Some(r) => format!(
            "a rate limit of {:.0} Mbit/s each way (256 KiB drop-tail queue)",
            r as f64 / 1e6
        ),
        None => "no rate limit".into(),
    };
    format!(
        "## Channels: reliable and unreliable messages over a lossy 20 ms link and over loopback\n\n\
         Machine: {machine}. {rounds} rounds, contenders alternating order round by round; a \
         fresh connection (and relay) per run. Paths: plain loopback (no relay), and through \
         `stt-link`'s in-process relay (perf/link): {one_way} ms each way (20 ms round trip), \
         0%, 1% and 5% independent loss each way, {rate}, seeded per round (every contender of a \
         round sees the same link). Ratios divide medians; \"per run\" gives the median and range \
         of the ratios taken round by round. Latency tests: {seconds:.0} s; unreliable tests: \
         {seconds:.0} s of sending, the receiver stopping once the sender has stopped and nothing \
         arrived for {quiet} ms, or {grace:.0} s after the sender stopped (what the library still \
         buffers then is lost).\n\n\
         Contenders:\n\n\
         - quinn 0.11: one unidirectional stream of length-prefixed messages (reliable), \
         `send_datagram` (unreliable: never refuses for lack of room, it drops the oldest \
         unsent datagram instead); self-signed certificate, rustls on ring, initial MTU 1472, \
         datagram buffers 4 MiB, default Cubic and flow-control windows; client and server tasks \
         on one tokio runtime with a worker per core;\n\
         - renet 2.0 with renet_netcode 2.0: `ConnectionConfig::default()` (5 MiB memory per \
         channel, reliable resend after 300 ms, 60,000 bytes per tick of send budget), ticked \
         every {tick} ms (`update`, transport `update`, the application, `send_packets`; \
         `std::thread::sleep` between ticks, ≈ 1.06 ms), client and server on a thread each; \
         netcode `Unsecure` authentication (packets still sealed with ChaCha20-Poly1305); \
         reliable sends gated by `can_send_message`; unreliable: each tick the client offers \
         messages until `can_send_message` refuses one (counted as one refusal), renet then \
         sends what the tick's budget allows and silently drops the rest;\n\
         - stt channels: two nodes of one reactor each (UDP backend `Auto`, GSO/GRO on, socket \
         buffers 4 MiB as for the others), the client dialling the server over the path; \
         `NodeConfig` and `ChannelConfig` defaults otherwise (CUBIC, pacing, 4 MiB send buffer, \
         32 MiB receive window, path MTU discovery); reliable: channel 0 (reliable-ordered) with \
         `send_channel`, which waits for room in the session's send buffer; unreliable: channel 1 \
         with `send_channel_with`, in two rows: `SendPolicy::Wait` (the default a user gets: the \
         send waits while the send buffer is full) and `SendPolicy::ReplaceOldest` (never waits: \
         the oldest queued unsent message is dropped and counted); a send the API turns down \
         (`QueueFull`) counts as refused. The receiving application reads the server's \
         `events()` on its own thread (giving each buffer back with `Node::recycle`).\n\
         {notes}{out}{relay}{detail}",
        machine = machine(),
        one_way = ONE_WAY.as_millis(),
        quiet = QUIET.as_millis(),
        grace = GRACE.as_secs_f64(),
        tick = renet::TICK.as_millis(),
    )
}

/// `median (min – max)` of what `f` picks from each round's stt report.
fn stt_spread(
    records: &[Record],
    digits: usize,
    f: impl Fn(&super::stt::Report) -> Option<f64>,
) -> String {
    let v: Vec<f64> = records
        .iter()
        .filter_map(|r| r.stt.as_ref().and_then(&f))
        .collect();
    if v.is_empty() {
        return "–".into();
    }
    spread(&v, digits)
}

/// stt's own statistics at the end of each run (the sender's
/// `channel_stats`, both nodes' UDP counters), and how the unreliable
/// messages that did not arrive are accounted for.
fn stt_detail(tests: &[Test], paths: &[Path], records: &Records) -> String {
    use super::stt::{mbit, ms};
    let mut stats = String::from(
        "\n### stt's own statistics at the end of each run\n\n\
         The sender's `Node::channel_stats` read after the receiver stopped, before the nodes \
         stop: smoothed round trip (and the smallest), loss rate (channel packets declared lost \
         over those sent, retransmissions included), congestion window, the latest \
         delivery-rate sample, the pacing rate, reliable ranges sent again, congestion events \
         and probe timeouts, and the mean and longest wait of a message in the send queue \
         before its first byte left. Median over rounds (min – max); the counts are summed \
         over rounds.\n\n\
         | test | path | contender | srtt ms | min rtt ms | loss rate % | cwnd KiB | delivery \
         rate Mbit/s | pacing rate Mbit/s | retransmits | congestion events / PTOs | queue \
         wait mean / max ms |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut unreliable = String::from(
        "\nUnreliable messages accepted and not delivered (all rounds together), against what \
         the sender counted: carried by a packet declared lost (`unreliable_lost`), dropped from \
         the send queue (`unreliable_replaced`), refused by the client's reactor or its socket \
         after the API took them (the client's UDP `errors_send`), still queued when the \
         receiver stopped (`send_buffered` / 1200) or in flight then (`bytes_in_flight` / \
         datagram size, about one message a datagram); \"unexplained\" is what none of these \
         accounts for (negative: more counted than missing, e.g. a packet declared lost that \
         arrived after all, or one still in flight whose message had already arrived). The server node's UDP `packets_dropped` is shown beside, not in the \
         sum: it counts any datagram the node dropped, its own outgoing ones (acknowledgements) \
         included, and a message it dropped after acknowledging it would show here as \
         unexplained.\n\n\
         | path | contender | accepted | delivered | not delivered | lost on the way | \
         replaced | client send errors | still queued | in flight | unexplained | server node \
         drops |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut any = false;
    for (ti, test) in tests.iter().enumerate() {
        for (pi, path) in paths.iter().enumerate() {
            for (ci, contender) in Contender::ALL.iter().enumerate() {
                let recs = &records[pi][ti][ci];
                let with: Vec<&Record> = recs.iter().filter(|r| r.stt.is_some()).collect();
                if with.is_empty() {
                    continue;
                }
                any = true;
                let sender = |r: &super::stt::Report| r.sender;
                let sum = |f: &dyn Fn(&super::stt::Report) -> u64| -> u64 {
                    with.iter().filter_map(|r| r.stt.as_ref()).map(f).sum()
                };
                let _ = writeln!(
                    stats,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} / {} |",
                    Test::KINDS[ti],
                    path.label(),
                    contender.label(),
                    stt_spread(recs, 1, |r| sender(r).map(|s| ms(s.rtt))),
                    stt_spread(recs, 1, |r| sender(r).map(|s| ms(s.min_rtt))),
                    stt_spread(recs, 2, |r| sender(r).map(|s| s.loss_rate * 100.0)),
                    stt_spread(recs, 0, |r| sender(r)
                        .map(|s| s.congestion_window as f64 / 1024.0)),
                    stt_spread(recs, 1, |r| sender(r).map(|s| mbit(s.delivery_rate))),
                    stt_spread(recs, 1, |r| sender(r).map(|s| mbit(s.pacing_rate))),
                    sum(&|r| sender(r).map_or(0, |s| s.retransmits)),
                    sum(&|r| sender(r).map_or(0, |s| s.congestion_events)),
                    sum(&|r| sender(r).map_or(0, |s| s.probe_timeouts)),
                    stt_spread(recs, 1, |r| sender(r).map(|s| ms(s.send_queue_wait_mean))),
                    stt_spread(recs, 1, |r| sender(r).map(|s| ms(s.send_queue_wait_max))),
                );
                if let Test::Unreliable { .. } = test {
                    let (mut accepted, mut delivered) = (0, 0);
                    for r in &with {
                        if let Ok(Outcome::Unreliable(u)) = &r.outcome {
                            accepted += u.accepted;
                            delivered += u.delivered;
                        }
                    }
                    let missing = sum(&|r| r.missing);
                    let lost = sum(&|r| sender(r).map_or(0, |s| s.unreliable_lost));
                    let replaced = sum(&|r| sender(r).map_or(0, |s| s.unreliable_replaced));
                    let dropped = sum(&|r| r.server_dropped());
                    let errors = sum(&|r| r.client_send_errors());
                    let queued = sum(&|r| r.still_queued());
                    let flying = sum(&|r| r.in_flight());
                    let counted = lost + replaced + errors + queued + flying;
                    let _ = writeln!(
                        unreliable,
                        "| {} | {} | {accepted} | {delivered} | {missing} | {lost} | {replaced} | \
                         {errors} | {queued} | {flying} | {} | {dropped} |",
                        path.label(),
                        contender.label(),
                        missing as i64 - counted as i64
                    );
                }
            }
        }
    }
    if !any {
        return String::new();
    }
    stats + &unreliable
}

/// The cells after the path and the contender.
fn row(test: &Test, mine: &[Record], quinn: &[Record], is_quinn: bool) -> String {
    let ratio = |f: &dyn Fn(&Outcome) -> Option<f64>| {
        let a = by_round(mine, f);
        if is_quinn {
            return "1.00×".to_owned();
        }
        let b = by_round(quinn, f);
        let (pa, pb) = (present(&a), present(&b));
        if pa.is_empty() || pb.is_empty() {
            return "–".to_owned();
        }
        ratio_cell(median(pa), median(pb), paired(&a, &b))
    };
    match test {
        Test::Bulk { .. } => {
            let f = |o: &Outcome| match o {
                Outcome::Bulk(b) => Some(b.mbits()),
                _ => None,
            };
            let v = present(&by_round(mine, f));
            let (lo, hi) = min_max(&v);
            let mib = present(&by_round(mine, |o| match o {
                Outcome::Bulk(b) => Some(b.delivered as f64 / MIB),
                _ => None,
            }));
            let finished = mine
                .iter()
                .filter(|r| matches!(&r.outcome, Ok(Outcome::Bulk(b)) if b.complete()))
                .count();
            format!(
                "{:.1} | {lo:.1} – {hi:.1} | {} | {:.1} | {finished} of {}",
                median(v.clone()),
                ratio(&f),
                median(mib),
                mine.len()
            )
        }
        Test::Latency { .. } => {
            let pick = |k: usize| {
                move |o: &Outcome| match o {
                    Outcome::Latency(l) => Some([l.p50, l.p99, l.max][k]),
                    _ => None,
                }
            };
            let cells: Vec<String> = (0..3)
                .map(|k| spread(&present(&by_round(mine, pick(k))), 3))
                .collect();
            let (mut sent, mut delivered) = (0, 0);
            for r in mine {
                if let Ok(Outcome::Latency(l)) = &r.outcome {
                    sent += l.sent;
                    delivered += l.delivered;
                }
            }
            format!(
                "{} | {} | {} | {} / {} | {delivered} / {sent} | {}",
                cells[0],
                cells[1],
                cells[2],
                ratio(&pick(0)),
                ratio(&pick(1)),
                sent - delivered
            )
        }
        Test::Unreliable { .. } => {
            let f = |o: &Outcome| match o {
                Outcome::Unreliable(u) => Some(u.rate),
                _ => None,
            };
            let v = present(&by_round(mine, f));
            let (lo, hi) = min_max(&v);
            let med = |g: fn(&super::Unreliable) -> f64| {
                median(present(&by_round(mine, |o| match o {
                    Outcome::Unreliable(u) => Some(g(u)),
                    _ => None,
                })))
            };
            format!(
                "{:.0} | {lo:.0} – {hi:.0} | {} | {:.0} | {:.0} | {:.1}% | {:.0}",
                median(v.clone()),
                ratio(&f),
                med(|u| u.accepted as f64),
                med(|u| u.refused as f64),
                med(|u| percent(u.delivered, u.accepted)),
                med(|u| u.accepted.saturating_sub(u.delivered) as f64),
            )
        }
    }
}
