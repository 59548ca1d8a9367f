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
