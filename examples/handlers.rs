//! Handlers, the two kinds, and sending without waiting.
//!
//! A node hands the messages that arrive to its `Events` channel, or to the
//! one `Handler` set with `Node::set_handler`, which says where it runs:
//!
//! - `on_reactor(f)` runs `f` on the reactor thread that received the
//!   message, and what `f` sends through its `replies` leaves in the same
//!   turn: the fastest answer, for work that never blocks. Here, an echo.
//! - `on_worker(f)` runs `f` on the node's worker threads, which may take
//!   their time. Here, a small store that speaks message types of its own
//!   (application types, 0x80 and up). A node has one handler, so it
//!   matches on `message.frame_type` to route them.
//!
//! Then `try_send`, which never waits: while the session's queue is full
//! (its peer reads slower than we write) it fails at once with
//! `SendError::QueueFull`, and the sender decides what to do.
//!
//! Run: `cargo run --release --example handlers`

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stt::{
    on_reactor, on_worker, ConnectOptions, Events, FrameType, HandlerError, Message, Node,
    NodeConfig, NodeEvent, SendError, UdpConfig, WsConfig,
};

// Fixed seeds keep the example reproducible; they were made at random
// once, like `stt seeds`. Real deployments generate their own (`stt seeds
// --out FILE`) and keep them secret: whoever holds the shared seed is a
// member of the network, whoever holds a node seed is that node.
const SHARED_SEED: &str = "1ff4fc8ddbaa3b8d7f8b4456fb5d958be76f981b50c6ec1413edf664d1c94db0";
const CLIENT_SEED: &str = "d4a8cdfea377ef6bdf043d76678223947ce62b828733adfcc009f655b5502d0b";
const ECHO_NODE_SEED: &str = "63d973618fc53e2c2d40509470d8442229ce95dbbefea18a5ddfcab83d28f986";
const STORE_NODE_SEED: &str = "c65a0b403b6a70030be5bd21cc9915eee5884ba106bbbdc04971901666a694ec";

/// The store's requests and answers: `PUT key=value` is answered with
/// `STORED`, `GET key` with `VALUE value` (empty if there is none).
const PUT: FrameType = FrameType::Application(0x80);
const STORED: FrameType = FrameType::Application(0x81);
const GET: FrameType = FrameType::Application(0x82);
const VALUE: FrameType = FrameType::Application(0x83);

/// Log records the client sends the store as plain DATA, as fast as it
/// can: more than the queues between them hold (the client's queue takes
/// 64 MiB of such records, the sockets a few more).
const LOG_RECORDS: usize = 16_000;
const RECORD_SIZE: usize = 16 << 10;

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let loopback = UdpConfig::bound_to("127.0.0.1:0".parse()?);
    let client = Node::start(
        NodeConfig::client(&hex(CLIENT_SEED), &hex(SHARED_SEED)).with_udp(loopback.clone()),
    )?;
    // The client has no handler: what comes back waits on its channel.
    let answers = client.events();

    // 1. An echo on the reactor. It must not block: while it runs, every
    //    other session of its reactor waits.
    let echo = Node::start(
        NodeConfig::new(&hex(ECHO_NODE_SEED), &hex(SHARED_SEED)).with_udp(loopback.clone()),
    )?;
    echo.set_handler(on_reactor(|message, replies| {
        let _ = replies.send_typed(
            message.session,
            message.stream_id,
            message.frame_type,
            &message.payload,
        );
        replies.recycle(message.payload);
    }))?;
    // One handler per node: a second one is refused.
    let second = echo.set_handler(on_reactor(|_, _| {}));
    assert!(matches!(second, Err(HandlerError::AlreadySet)));

    let to_echo = client.connect_udp(echo.udp_local_addr().ok_or("no UDP")?)?;
    to_echo.send(b"hello, reactor")?;
    let echoed = next_message(&answers)?;
    println!(
        "echo from node {}: {:?}",
        echoed.peer_node,
        String::from_utf8_lossy(&echoed.payload)
    );

    // 2. A store on workers. Two of them, whatever the core count, and a
    //    short channel to them: the example behaves the same on any machine.
    let mut config = NodeConfig::new(&hex(STORE_NODE_SEED), &hex(SHARED_SEED))
        .with_udp(loopback)
        .with_queue_depth(64);
    config.workers = 2;
    let store = Node::start(config)?;
    let ws_addr = store.start_websocket_server("127.0.0.1:0".parse()?, WsConfig::default())?;
    let table = Mutex::new(HashMap::<String, String>::new());
    let logged = Arc::new(AtomicUsize::new(0));
    let log = logged.clone();
    store.set_handler(on_worker(move |message, replies| {
        let (session, stream) = (message.session, message.stream_id);
        match message.frame_type {
            PUT => {
                let text = String::from_utf8_lossy(&message.payload);
                if let Some((key, value)) = text.split_once('=') {
                    lock(&table).insert(key.to_owned(), value.to_owned());
                }
                let _ = replies.send_typed(session, stream, STORED, b"");
            }
            GET => {
                let key = String::from_utf8_lossy(&message.payload);
                let value = lock(&table).get(key.as_ref()).cloned().unwrap_or_default();
                let _ = replies.send_typed(session, stream, VALUE, value.as_bytes());
            }
            FrameType::Data => {
                // A log record, written to a slow disk. A worker may
                // block; a reactor handler may not.
                std::thread::sleep(Duration::from_micros(100));
                log.fetch_add(1, Ordering::Relaxed);
            }
            other => eprintln!("store: no request of type {other:?}"),
        }
    }))?;

    // Workers run side by side, so two messages of one session may be
    // handled in either order: the client waits for each answer before it
    // asks the next question.
    let to_store = client.connect_udp(store.udp_local_addr().ok_or("no UDP")?)?;
    to_store.send_typed(0, PUT, b"colour=teal")?;
    expect(&answers, STORED)?;
    to_store.send_typed(0, GET, b"colour")?;
    let value = expect(&answers, VALUE)?;
    println!(
        "store: colour is {:?}",
        String::from_utf8_lossy(&value.payload)
    );

    // 3. try_send over WebSocket, which drops nothing: when the store reads
    //    slower than the client writes, its node stops reading the
    //    connection, and the client's queue fills. (Over UDP the store would
    //    drop what it cannot take instead.)
    let logs = client.connect_websocket_with(
        &format!("ws://{ws_addr}/"),
        &ConnectOptions::new().with_timeout(Duration::from_secs(3)),
    )?;
    let record = vec![b'.'; RECORD_SIZE];
    let (mut sent, mut refused, mut first_full) = (0, 0, None);
    let started = Instant::now();
    while sent < LOG_RECORDS {
        match logs.try_send(&record) {
            Ok(()) => sent += 1,
            Err(SendError::QueueFull) => {
                // A sender that must never block (a game loop, a capture
                // thread) keeps the record for its next turn, or drops it.
                // This one pauses a moment and tries the same record again.
                refused += 1;
                first_full.get_or_insert(sent);
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let queued = started.elapsed();
    match first_full {
        Some(at) => println!(
            "{LOG_RECORDS} records queued in {queued:.2?}: the queue was first full after {at}, \
             and try_send said QueueFull {refused} times"
        ),
        None => println!("{LOG_RECORDS} records queued in {queued:.2?}: the queue never filled"),
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while logged.load(Ordering::Relaxed) < LOG_RECORDS {
        if Instant::now() > deadline {
            let written = logged.load(Ordering::Relaxed);
            return Err(format!("the store wrote {written} of {LOG_RECORDS} records").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "the store wrote all {LOG_RECORDS} records after {:.2?}: none lost",
        started.elapsed()
    );
    Ok(())
}

/// The next message on `events`, skipping session events.
fn next_message(events: &Events) -> Result<Message, Error> {
    loop {
        if let NodeEvent::Message(message) = events.recv_timeout(Duration::from_secs(5))? {
            return Ok(message);
        }
    }
}

/// The next message, which must be of type `frame_type`.
fn expect(events: &Events, frame_type: FrameType) -> Result<Message, Error> {
    let message = next_message(events)?;
    if message.frame_type != frame_type {
        return Err(format!("expected {frame_type:?}, got {:?}", message.frame_type).into());
    }
    Ok(message)
}

/// The store's table. Its lock guards a plain map: a panic elsewhere
/// cannot leave it half-changed.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decodes one of the hex seeds above.
fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("a hex seed"))
        .collect()
}
