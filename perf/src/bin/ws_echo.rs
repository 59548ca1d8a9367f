//! `ws_echo`: a plain WebSocket echo server (tungstenite, one thread per
//! connection, TCP_NODELAY), the baseline beside `stt serve` for the
//! JavaScript client's benchmark (`clients/js/perf/bench.mjs`).
//!
//! ```text
//! ws_echo [ADDR]        # default 127.0.0.1:0; prints "WebSocket listening on ws://ADDR/"
//! ```
//!
//! Binary messages come back unchanged and unsealed; text messages too;
//! pings are answered by tungstenite. Each echo is written and flushed
//! before the next message is read.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};

use tokio_tungstenite::tungstenite::{self, Message};

fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tungstenite::accept(stream) else {
        return;
    };
    loop {
        match ws.read() {
            Ok(m @ (Message::Binary(_) | Message::Text(_))) => {
                if ws.send(m).is_err() {
                    return;
                }
            }
            Ok(Message::Close(_)) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = match TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: binding {addr}: {e}");
            std::process::exit(1);
        }
    };
    match listener.local_addr() {
        Ok(a) => println!("WebSocket listening on ws://{a}/"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
    let _ = std::io::stdout().flush();
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || serve(stream));
    }
}
