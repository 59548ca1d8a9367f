//! Starting a node: keys, sockets, the endpoint configuration shared by the
//! reactors, and the reactor threads.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::crypto::{CookieKey, Identity, Msg1Check, NetworkKey};
use crate::endpoint::{Directory, EndpointConfig, EndpointStats};
use crate::pool::BufferPool;
use crate::reactor::{Dispatch, Reactor, ReactorHandle, Shared};
use crate::stream::MemoryBudget;
use crate::transport::udp;
use crate::transport::Transport;

use super::{Core, Inner, Node, NodeConfig, StartError};

impl Node {
    /// Starts a node: derives its keys, binds its sockets, starts its
    /// reactors.
    pub fn start(config: NodeConfig) -> Result<Node, StartError> {
        let identity = if config.node_seed.is_empty() {
            // A connect-token client: any identity will do, a fresh one.
            Identity::generate()
                .map_err(|_| StartError::Invalid("no randomness for an identity"))?
        } else {
            Identity::from_seed(&config.node_seed)?
        };
        let network = if config.shared_seed.is_empty() {
            None
        } else {
            Some(NetworkKey::from_seed(&config.shared_seed)?)
        };
        let tokens = match &config.tokens {
            None => None,
            Some(t) => {
                let gate = crate::token::TokenGate::new(t, network.as_ref());
                if !gate.usable() {
                    return Err(StartError::Invalid(
                        "tokens need at least one server name and one issuing key (or a shared seed to derive it)",
                    ));
                }
                Some(gate)
            }
        };
        if config.server_mode && network.is_none() && tokens.is_none() {
            return Err(StartError::Invalid(
                "a server needs a shared seed or a token configuration: a node without either can only connect with tokens (set server_mode false, NodeConfig::token_client)",
            ));
        }
        config.session.validate()?;
        if config.reactors == 0 || config.reactors > 256 {
            return Err(StartError::Invalid("reactors must be 1..=256"));
        }
        if config.queue_depth == 0 || config.queue_bytes == 0 {
            return Err(StartError::Invalid(
                "queue_depth and queue_bytes must be at least 1",
            ));
        }
        if config.send_timeout.is_zero() || config.call_timeout.is_zero() {
            return Err(StartError::Invalid(
                "send_timeout and call_timeout must be above zero",
            ));
        }
        let count = config.reactors;
        let mut session = config.session.clone();
        let mut per_reactor: Vec<Vec<Box<dyn Transport>>> =
            (0..count).map(|_| Vec::new()).collect();
        let mut udp_state = None;
        if let Some(udp_config) = &config.udp {
            udp_config.validate()?;
            session.max_datagram_size = Some(udp_config.max_packet_size);
            let (sockets, info) = udp::bind_group(udp_config, count)?;
            let mut counters = Vec::with_capacity(count);
            for (i, socket) in sockets.into_iter().enumerate() {
                let t = udp::open_backend(udp_config, &info, socket)?;
                counters.push(t.counters().clone());
                per_reactor[i].push(t);
            }
            udp_state = Some((info, counters));
        }
        let (events_tx, events) = crossbeam_channel::bounded(config.queue_depth);
        let workers = config.workers.max(1);
        let (work_tx, work): (Vec<_>, Vec<_>) = (0..workers)
            .map(|_| crossbeam_channel::bounded(config.queue_depth.div_ceil(workers)))
            .unzip();
        let cookie_key = CookieKey::generate(&ring::rand::SystemRandom::new())
            .map_err(|_| StartError::Invalid("no randomness for the cookie secret"))?;
        // Without a shared seed, no member's message 1 may authenticate:
        // the check runs under a key nobody holds.
        let msg1_check = match &network {
            Some(n) => Msg1Check::new(n),
            None => Msg1Check::new(
                &NetworkKey::random()
                    .map_err(|_| StartError::Invalid("no randomness for the message-1 check"))?,
            ),
        };
        let pool = Arc::new(BufferPool::new());
        let node_id = identity.node_id();
        let endpoint = Arc::new(EndpointConfig {
            identity,
            network,
            tokens,
            session: session.clone(),
            accepting: AtomicBool::new(config.server_mode),
            max_sessions_per_shard: config.max_sessions.div_ceil(count).max(1),
            max_pending_per_shard: config.max_pending_handshakes.div_ceil(count).max(1),
            cookie_threshold_per_shard: config.cookie_threshold.div_ceil(count),
            budget: MemoryBudget::new(config.reassembly_budget),
            cookie_key,
            msg1_check,
            started: Instant::now(),
            wall_clock: Arc::new(|_| crate::crypto::handshake::unix_now()),
            directory: Directory::new(count),
            payloads: Some(pool.clone()),
            stats: EndpointStats::default(),
            quotas: crate::endpoint::Quotas::new(config.quotas),
            authorize: config.authorize.clone().map(|allow| {
                let hook: crate::endpoint::Authorize = Arc::new(move |node_id, addr, client| {
                    allow(&super::config::PeerCandidate {
                        node_id,
                        addr,
                        client: client.cloned(),
                    })
                });
                hook
            }),
        });
        let shared = Arc::new(Shared {
            endpoint,
            events: events_tx,
            work: work_tx,
            dispatch: Dispatch::default(),
            queued: Arc::new(crate::reactor::QueuedBytes::new(config.queue_bytes)),
            stopping: AtomicBool::new(false),
            pool,
            inline: OnceLock::new(),
        });
        let (threads, handles) = start_reactors(&shared, per_reactor)?;
        tracing::info!(
            node_id = %node_id,
            udp = ?udp_state.as_ref().map(|(info, _)| info.local_addr),
            reactors = count,
            server_mode = config.server_mode,
            "node started"
        );
        let core = Arc::new(Core {
            node_id,
            shared,
            reactors: handles,
            running: AtomicBool::new(true),
            send_timeout: config.send_timeout,
            call_timeout: config.call_timeout,
        });
        Ok(Node {
            inner: Arc::new(Inner {
                core,
                threads: Mutex::new(threads),
                events,
                udp: udp_state,
                next_reactor: AtomicUsize::new(0),
                server_mode: config.server_mode,
                connect_timeout: session.handshake_timeout + Duration::from_secs(1),
                ws: Mutex::new(super::ws::WsState::default()),
                work,
                handler: OnceLock::new(),
                workers: Mutex::new(Vec::new()),
            }),
        })
    }
}

type Started = (Vec<std::thread::JoinHandle<()>>, Vec<ReactorHandle>);

/// Starts one thread per reactor. Each reactor is built on its own thread,
/// so that its transports register (and an io_uring backend submits its
/// first requests) on the thread that will drive them. The threads report
/// their handles, then wait for everyone's before they run.
fn start_reactors(
    shared: &Arc<Shared>,
    per_reactor: Vec<Vec<Box<dyn Transport>>>,
) -> Result<Started, StartError> {
    let count = per_reactor.len();
    let mut threads = Vec::with_capacity(count);
    let mut ready = Vec::with_capacity(count);
    let mut go = Vec::with_capacity(count);
    for (i, transports) in per_reactor.into_iter().enumerate() {
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let (go_tx, go_rx) = crossbeam_channel::bounded::<Vec<ReactorHandle>>(1);
        let shared = shared.clone();
        let t = std::thread::Builder::new()
            .name(format!("stt-reactor-{i}"))
            .spawn(move || match Reactor::new(i, shared, transports) {
                Ok((mut reactor, handle)) => {
                    let _ = ready_tx.send(Ok(handle));
                    if let Ok(peers) = go_rx.recv() {
                        reactor.set_peers(peers);
                        reactor.run();
                    }
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })?;
        threads.push(t);
        ready.push(ready_rx);
        go.push(go_tx);
    }
    let mut handles = Vec::with_capacity(count);
    let mut failure = None;
    for r in ready {
        match r.recv() {
            Ok(Ok(h)) => handles.push(h),
            Ok(Err(e)) => failure = Some(e),
            Err(_) => {
                failure = Some(std::io::Error::other(
                    "a reactor thread died while starting",
                ))
            }
        }
    }
    if let Some(e) = failure {
        // Dropping the go senders lets every started thread exit.
        drop(go);
        for t in threads {
            let _ = t.join();
        }
        return Err(e.into());
    }
    for g in &go {
        let _ = g.send(handles.clone());
    }
    Ok((threads, handles))
}
