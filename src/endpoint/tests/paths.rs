//! Path validation and migration in virtual time: a peer that moves, and
//! copies of its datagrams sent from forged addresses.

use super::*;

#[test]
fn a_session_follows_its_peer_to_a_new_address_once_validated() {
    let mut net = Net::new();
    let (server, client, id) = net.established_pair();
    // NAT rebinding: the client's datagrams now come from another port.
    let moved = addr(5555);
    net.rebind(client, moved);
    net.send(client, id, b"from the new address");
    net.run(Duration::from_millis(100));
    // Delivered at once; the session stays on the old path until the new
    // one is validated.
    let got = messages(&net.events(server));
    assert_eq!(got, vec![(b"from the new address".to_vec(), addr(1001))]);
    // The probe's pong came back; the next datagram along the path moves
    // the session, and the server answers there.
    net.send(client, id, b"again");
    net.run(Duration::from_millis(100));
    let got = messages(&net.events(server));
    assert_eq!(got, vec![(b"again".to_vec(), moved)]);
    net.nodes[server].out.sent.clear();
    let now = net.now;
    let node = &mut net.nodes[server];
    node.ep
        .send(now, id, 0, FrameType::Data, b"to you", &mut node.out)
        .expect("send");
    assert_eq!(node.out.sent.len(), 1);
    assert_eq!(node.out.sent[0].0, moved);
}

#[test]
fn a_copied_datagram_from_a_forged_address_does_not_move_the_session() {
    let mut net = Net::new();
    let (server, client, id) = net.established_pair();
    // An on-path attacker copies every datagram of the client and sends
    // the copy first, from a victim's address.
    let victim = addr(6666);
    let server_addr = net.addr_of(server);
    let mut copied = 0;
    for i in 0..20 {
        net.send(client, id, format!("message {i}").as_bytes());
        let original = net.flight.values().last().expect("in flight").bytes.clone();
        copied += original.len();
        net.inject_after(Duration::from_millis(1), victim, server_addr, original);
        net.run(Duration::from_millis(30));
    }
    // Every message arrived once, from the client's real address.
    let got = messages(&net.events(server));
    assert_eq!(got.len(), 20);
    assert!(got.iter().all(|(_, from)| *from == net.addr_of(client)));
    // The server still answers the client, not the victim.
    net.nodes[server].out.sent.clear();
    let now = net.now;
    let node = &mut net.nodes[server];
    node.ep
        .send(now, id, 0, FrameType::Data, b"reply", &mut node.out)
        .expect("send");
    assert_eq!(node.out.sent[0].0, net.from[client]);
    // The victim received probes only, within 3x what was sent in its name.
    let to_victim = net.elsewhere.get(&victim).copied().unwrap_or(0);
    assert!(to_victim > 0, "the forged path was probed");
    assert!(
        to_victim <= 3 * copied,
        "{to_victim} bytes to the victim, {copied} copied"
    );
}

#[test]
fn probes_of_a_forged_path_stay_within_three_times_what_came_along_it() {
    let mut net = Net::new();
    let (server, client, id) = net.established_pair();
    let victim = addr(7777);
    let server_addr = net.addr_of(server);
    net.send(client, id, b"x");
    let copy = net.flight.values().last().expect("in flight").bytes.clone();
    net.run(Duration::from_millis(30));
    // The same copy, replayed 50 times from the victim's address: only the
    // first authenticates (the replay window drops the rest), so the
    // victim's budget is three times one datagram.
    for _ in 0..50 {
        net.inject(victim, server_addr, copy.clone());
    }
    net.run(Duration::from_secs(30));
    let to_victim = net.elsewhere.get(&victim).copied().unwrap_or(0);
    assert!(
        to_victim <= 3 * copy.len(),
        "{to_victim} > 3 x {}",
        copy.len()
    );
    assert!(net.nodes[server].dropped() >= 49);
}

#[test]
fn a_member_cannot_validate_a_forged_path_by_predicting_or_guessing() {
    use crate::frame::Control;
    let mut net = Net::new();
    let (server, client, id) = net.established_pair();
    let victim = addr(8888);
    let server_addr = net.addr_of(server);
    let mut copied = 0;
    for round in 0..20u64 {
        let now = net.now;
        // The member asks for a key update, so that the server seals under
        // a new key and pings its real address in the same turn as the
        // probe of the forged one.
        if let Some(e) = net.nodes[client].ep.sessions.get_mut(&id) {
            e.session.update_keys(now);
        }
        net.send(client, id, format!("round {round}").as_bytes());
        let original = net.flight.values().last().expect("in flight").bytes.clone();
        copied += original.len();
        // Its own datagram, from the victim's address, arriving first.
        net.inject_after(Duration::from_millis(1), victim, server_addr, original);
        net.run(Duration::from_millis(3));
        let now_at = net.nodes[server].ep.sessions.get(&id).map(|e| e.path.peer);
        assert_eq!(now_at, Some(net.addr_of(client)), "moved in round {round}");
        // The strongest member: it knows every ping token the server has
        // handed out (as if predicted from the clock, or seen in the pings
        // that reach it) and answers pongs to all of them and their
        // neighbours, and it guesses path responses.
        let known = net.nodes[server]
            .ep
            .sessions
            .get(&id)
            .map(|e| e.session.last_token_for_test())
            .unwrap_or(0);
        let now = net.now;
        let n = &mut net.nodes[client];
        if let Some(e) = n.ep.sessions.get_mut(&id) {
            for token in known.saturating_sub(16)..=known + 16 {
                e.session
                    .send_control_for_test(&Control::Pong { token }, now);
            }
            for guess in 0..16u64 {
                let data = (guess.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ round).to_be_bytes();
                e.session
                    .send_control_for_test(&Control::PathResponse { data }, now);
            }
        }
        let _ = n.ep.poll_timeout();
        if let Some(mut e) = n.ep.sessions.remove(&id) {
            // Flush what the member sealed, along its own path.
            let path = e.path.clone();
            let mut t = Transmits::new();
            e.session.poll_transmits(&mut t);
            n.out.transmit(&path, &mut t);
            n.ep.sessions.insert(id, e);
        }
        net.run(Duration::from_millis(40));
        let now_at = net.nodes[server].ep.sessions.get(&id).map(|e| e.path.peer);
        assert_eq!(now_at, Some(net.addr_of(client)), "moved in round {round}");
    }
    // Still on the member's real address: the server never moved.
    let server_path = net.nodes[server]
        .ep
        .sessions
        .get(&id)
        .expect("open")
        .path
        .peer;
    assert_eq!(server_path, net.addr_of(client));
    // The victim got challenges only, within 3x what was sent in its name.
    let to_victim = net.elsewhere.get(&victim).copied().unwrap_or(0);
    assert!(to_victim > 0, "the forged path was challenged");
    assert!(
        to_victim <= 3 * copied,
        "{to_victim} bytes to the victim, {copied} copied"
    );
}

#[test]
fn a_path_response_validates_only_the_path_its_challenge_went_to() {
    let mut net = Net::new();
    let (server, client, id) = net.established_pair();
    // The client really moves: challenges reach it at the new address.
    let moved = addr(5556);
    net.rebind(client, moved);
    net.send(client, id, b"moved");
    net.run(Duration::from_millis(100));
    net.send(client, id, b"again");
    net.run(Duration::from_millis(100));
    let entry = net.nodes[server].ep.sessions.get(&id).expect("open");
    assert_eq!(entry.path.peer, moved, "validated, then moved");
    assert!(entry.probe.is_none());
    // A response to that challenge does not validate another path.
    let victim = addr(5557);
    let server_addr = net.addr_of(server);
    net.send(client, id, b"copied");
    let copy = net.flight.values().last().expect("in flight").bytes.clone();
    net.inject_after(Duration::from_millis(1), victim, server_addr, copy);
    net.run(Duration::from_millis(100));
    let entry = net.nodes[server].ep.sessions.get(&id).expect("open");
    assert_eq!(entry.path.peer, moved, "moved to the validated path only");
}
