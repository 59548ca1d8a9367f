//! Connect tokens, the usual deployment: a game server that is a member of
//! the network, a backend that gives each logged-in player a short-lived
//! token, and a player's client that holds no seed at all. The server learns
//! who the client is from the token; revoking the client closes its session
//! and makes its token useless.
//!
//! Run: `cargo run --release --example tokens`

use std::time::Duration;

use stt::session::CloseReason;
use stt::{
    ConnectError, ConnectOptions, ConnectToken, Issuer, IssuingKey, Node, NodeConfig, NodeEvent,
    TokenConfig, TokenRequest, UdpConfig, WsConfig,
};

// Fixed seeds keep the example reproducible; they were made at random once,
// like `stt seeds`. Real deployments generate their own and keep them
// secret: the servers and the backend hold the shared seed, clients never.
const SHARED_SEED: &str = "9f5259f07752a8aa2829b5555303664a926558938371984b1abe2d0881f6285d";
const SERVER_SEED: &str = "9ba1b0b97d3fa5c7ecd3319c4acfdbef795bde819a830f06b160030c7627208d";
/// The player the backend logged in.
const PLAYER: u64 = 7;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let shared = hex(SHARED_SEED);
    let loopback = UdpConfig::bound_to("127.0.0.1:0".parse()?);

    // The server is a member (it holds the shared seed) and also admits
    // clients whose token names it "eu-1". `TokenConfig::new` opens tickets
    // sealed under the key derived from the shared seed, so it needs no
    // other secret.
    let server = Node::start(
        NodeConfig::new(&hex(SERVER_SEED), &shared)
            .with_udp(loopback.clone())
            .with_tokens(TokenConfig::new(["eu-1"])),
    )?;
    let ws_addr = server.start_websocket_server("127.0.0.1:0".parse()?, WsConfig::default())?;
    let udp_addr = server
        .udp_local_addr()
        .ok_or("the server has no UDP socket")?;
    println!("server \"eu-1\" on UDP {udp_addr} and ws://{ws_addr}/");

    // The backend, after it logged the player in: a token for client id 7,
    // valid for "eu-1" (10 minutes by default), with data only the servers
    // can read (it is sealed in the ticket). It would send the text to the
    // client over HTTPS: whoever holds it can connect until it expires.
    let text = {
        let issuer = Issuer::new(IssuingKey::from_shared_seed(&shared)?);
        let request =
            TokenRequest::new(PLAYER, ["eu-1"]).with_data(b"name=ada;role=player".to_vec());
        issuer.issue(&request)?.encode()
    };
    println!(
        "backend issued {}… ({} characters)",
        &text[..16],
        text.len()
    );

    // The client: no seed, a fresh random identity, no incoming sessions.
    // The token replaces the network key in its handshake; the server
    // proves it could open the ticket, so the client talks to a server or
    // to nobody.
    let client = Node::start(NodeConfig::token_client().with_udp(loopback))?;
    let token = ConnectToken::parse(&text)?;
    let with_token = ConnectOptions::new().with_token(token);
    let session = client.connect_websocket_with(&format!("ws://{ws_addr}/"), &with_token)?;
    println!("client connected over {}", session.info().transport);
    session.send(b"hello")?;
    session.send(b"join lobby 3")?;

    // Every message of a token session says which client sent it and the
    // token's data: the server needs no login protocol of its own.
    let events = server.events();
    let mut echoed = 0;
    while echoed < 2 {
        if let NodeEvent::Message(message) = events.recv_timeout(Duration::from_secs(5))? {
            let who = message
                .client
                .as_ref()
                .ok_or("a token session without a client")?;
            println!(
                "server got {:?} from client {} ({})",
                String::from_utf8_lossy(&message.payload),
                who.client_id,
                String::from_utf8_lossy(&who.data)
            );
            server.send(message.session, &message.payload)?;
            echoed += 1;
        }
    }
    let client_events = client.events();
    let mut answers = 0;
    while answers < 2 {
        if let NodeEvent::Message(m) = client_events.recv_timeout(Duration::from_secs(5))? {
            println!("client got echo {:?}", String::from_utf8_lossy(&m.payload));
            answers += 1;
        }
    }

    // The player is banned (or logs out): the server closes each of its
    // sessions with code 8 and refuses every token issued to it until now.
    let closed = server.revoke_client(PLAYER)?;
    println!("server revoked client {PLAYER}: {closed} session(s) closed");
    loop {
        if let NodeEvent::SessionClosed {
            session: id,
            reason,
        } = client_events.recv_timeout(Duration::from_secs(5))?
        {
            if id != session.id() {
                continue;
            }
            match reason {
                CloseReason::Peer { code: 8, reason } => {
                    println!("client: session closed by the server, code 8 ({reason})");
                    break;
                }
                other => return Err(format!("unexpected close: {other:?}").into()),
            }
        }
    }

    // The same token again (over UDP this time) gets an authenticated
    // refusal: only a server that opened the ticket can make one, so the
    // client can trust the reason and ask its backend for a new token.
    match client.connect_udp_with(udp_addr, &with_token) {
        Err(ConnectError::TokenRefused { reason, .. }) => {
            println!("client: second connect refused: {reason}")
        }
        Err(e) => return Err(e.into()),
        Ok(_) => return Err("a revoked client's token was admitted".into()),
    }
    client.stop();
    server.stop();
    Ok(())
}

/// Decodes one of the hex seeds above.
fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("a hex seed"))
        .collect()
}
