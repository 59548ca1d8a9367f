//! The issuer and the token's text form.

use super::*;

fn issuer() -> Issuer {
    Issuer::new(IssuingKey::from_bytes([5; 32]))
}

#[test]
fn a_token_round_trips_through_its_text() {
    let request = TokenRequest::new(u64::MAX, ["eu-1", "ws://game.example:8081/"])
        .with_lifetime(Duration::from_secs(90))
        .with_data(vec![0xAB; MAX_DATA_LEN]);
    let token = issuer().issue(&request).expect("issue");
    let text = token.encode();
    assert!(text.starts_with(TOKEN_PREFIX));
    assert!(text[TOKEN_PREFIX.len()..]
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let back: ConnectToken = text.parse().expect("parse");
    assert_eq!(back, token);
    assert_eq!(back.client_id(), u64::MAX);
    assert_eq!(
        back.expires_at().duration_since(back.issued_at()).ok(),
        Some(Duration::from_secs(90))
    );
    assert_eq!(back.audience(), ["eu-1", "ws://game.example:8081/"]);
    assert!(!back.is_expired());
    // The application data is in the ticket only.
    assert!(!back.to_bytes().windows(16).any(|w| w == [0xAB; 16]));
    // Debug shows no secret.
    let shown = format!("{back:?}");
    assert!(
        !shown.contains("client_key") && !shown.contains("ticket"),
        "{shown}"
    );
}

#[test]
fn issuing_refuses_what_a_server_could_not_read() {
    let i = issuer();
    let none: [&str; 0] = [];
    assert_eq!(
        i.issue(&TokenRequest::new(1, none)),
        Err(IssueError::AudienceCount(0))
    );
    let nine: Vec<String> = (0..9).map(|n| format!("s{n}")).collect();
    assert_eq!(
        i.issue(&TokenRequest::new(1, nine)),
        Err(IssueError::AudienceCount(9))
    );
    assert_eq!(
        i.issue(&TokenRequest::new(1, [""])),
        Err(IssueError::AudienceName(0))
    );
    assert_eq!(
        i.issue(&TokenRequest::new(1, ["x".repeat(256)])),
        Err(IssueError::AudienceName(256))
    );
    assert_eq!(
        i.issue(&TokenRequest::new(1, ["a"]).with_data(vec![0; MAX_DATA_LEN + 1])),
        Err(IssueError::DataTooLong(MAX_DATA_LEN + 1))
    );
    assert_eq!(
        i.issue(&TokenRequest::new(1, ["a"]).with_lifetime(Duration::from_millis(999))),
        Err(IssueError::LifetimeTooShort)
    );
    assert_eq!(
        i.issue(&TokenRequest::new(1, ["a"]).with_lifetime(Duration::MAX)),
        Err(IssueError::LifetimeTooLong)
    );
    let long: Vec<String> = (0..8).map(|n| format!("{n}{}", "x".repeat(200))).collect();
    assert_eq!(
        i.issue(&TokenRequest::new(1, long).with_data(vec![1; MAX_DATA_LEN])),
        Err(IssueError::TooLarge)
    );
}

#[test]
fn every_truncation_and_bad_version_of_a_token_is_refused() {
    let token = issuer().issue(&TokenRequest::new(3, ["a"])).expect("issue");
    let bytes = token.to_bytes();
    for cut in 0..bytes.len() {
        assert!(
            ConnectToken::from_bytes(&bytes[..cut]).is_err(),
            "cut {cut}"
        );
    }
    let mut v2 = bytes.to_vec();
    v2[0] = 2;
    assert_eq!(
        ConnectToken::from_bytes(&v2),
        Err(TokenParseError::Malformed("version"))
    );
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert!(ConnectToken::from_bytes(&longer).is_err());
    // Times no clock can hold are refused, not a panic later.
    let mut far = bytes.to_vec();
    far[17..25].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(
        ConnectToken::from_bytes(&far),
        Err(TokenParseError::Malformed("lifetime"))
    );
    let latest = MAX_TIME;
    far[17..25].copy_from_slice(&latest.to_be_bytes());
    let ok = ConnectToken::from_bytes(&far).expect("the year 9999 is a time");
    assert!(!ok.is_expired());
}

#[test]
fn issuing_keys_read_back_and_derive_from_the_shared_seed() {
    let key = IssuingKey::generate().expect("key");
    let back = IssuingKey::from_hex(&key.to_hex()).expect("hex");
    assert_eq!(back.key_id(), key.key_id());
    assert!(matches!(
        IssuingKey::from_hex("zz"),
        Err(KeyParseError::Length(2))
    ));
    assert!(matches!(
        IssuingKey::from_hex(&"g".repeat(64)),
        Err(KeyParseError::NotHex)
    ));
    let seed = [0x5au8; 32];
    let derived = IssuingKey::from_shared_seed(&seed).expect("seed");
    let network = NetworkKey::from_seed(&seed).expect("seed");
    assert_eq!(
        derived.key_id(),
        IssuingKey::from_network(&network).key_id()
    );
    // Not the network key itself.
    assert_ne!(derived.secret(), network.psk());
    assert!(!format!("{derived:?}").contains(&derived.to_hex()[..8]));
}

#[test]
fn refusal_reasons_round_trip() {
    for r in [
        TokenRefusal::Expired,
        TokenRefusal::NotYetValid,
        TokenRefusal::WrongAudience,
        TokenRefusal::Revoked,
    ] {
        assert_eq!(TokenRefusal::from_u8(r.to_u8()), r);
    }
    // Reserved values still refuse: a newer server's reason.
    assert_eq!(TokenRefusal::from_u8(5), TokenRefusal::Unknown(5));
    assert_eq!(TokenRefusal::from_u8(5).to_u8(), 5);
}

mod gate_checks {
    //! `TokenGate::check` on genuine token message 1s, at its edges.

    use super::*;
    use crate::crypto::Identity;
    use crate::frame::SessionId;
    use crate::session::{Session, SessionConfig};

    fn issuer() -> Issuer {
        Issuer::new(IssuingKey::from_bytes([5; 32]))
    }

    fn gate(max_lifetime: Duration) -> TokenGate {
        let config = TokenConfig {
            max_lifetime,
            ..TokenConfig::with_key(IssuingKey::from_bytes([5; 32]), ["eu-1"])
        };
        TokenGate::new(&config, None)
    }

    /// A token issued at `issued_at` for `lifetime` seconds, and the message
    /// 1 a client sends with it (stamped with the real clock).
    fn message_1(issued_at: u64, lifetime: u64) -> Vec<u8> {
        let request = TokenRequest::new(7, ["eu-1"]).with_lifetime(Duration::from_secs(lifetime));
        let token = issuer()
            .issue_at(&request, issued_at, [1; 16], [2; 32])
            .expect("issue");
        let identity = Identity::from_seed(&[3; 32]).expect("seed");
        let mut s = Session::connect_with_token(
            SessionConfig::default(),
            &identity,
            &token,
            SessionId(1),
            std::time::Instant::now(),
            None,
        )
        .expect("connect");
        s.poll_transmit().expect("message 1")
    }

    fn verdict(gate: &TokenGate, msg1: &[u8], unix: u64) -> Result<(), Option<TokenRefusal>> {
        match gate.check(msg1, unix) {
            GateResult::Admit(_) => Ok(()),
            GateResult::Refuse(r, _) => Err(Some(r)),
            GateResult::Silent => Err(None),
        }
    }

    #[test]
    fn validity_edges() {
        let g = gate(DEFAULT_MAX_LIFETIME);
        let real = crate::crypto::handshake::unix_now();
        // Issued up to a minute in this node's future: clocks disagree.
        assert_eq!(verdict(&g, &message_1(real + 60, 600), real), Ok(()));
        assert_eq!(
            verdict(&g, &message_1(real + 61, 600), real),
            Err(Some(TokenRefusal::NotYetValid))
        );
        // Valid until the second before `expires_at`.
        let m = message_1(real - 600, 601);
        assert_eq!(verdict(&g, &m, real), Ok(()));
        let m = message_1(real - 600, 600);
        assert_eq!(verdict(&g, &m, real), Err(Some(TokenRefusal::Expired)));
        // A lifetime beyond the server's `max_lifetime` counts as expired.
        let short = gate(Duration::from_secs(60));
        assert_eq!(
            verdict(&short, &message_1(real, 61), real),
            Err(Some(TokenRefusal::Expired))
        );
        assert_eq!(verdict(&short, &message_1(real, 60), real), Ok(()));
    }

    #[test]
    fn a_stale_message_1_gets_no_refusal_and_a_lying_header_no_admission() {
        let g = gate(DEFAULT_MAX_LIFETIME);
        let real = crate::crypto::handshake::unix_now();
        // Expired: refused while the message 1 is fresh, silence after.
        let m = message_1(real - 600, 600);
        assert_eq!(verdict(&g, &m, real), Err(Some(TokenRefusal::Expired)));
        assert_eq!(verdict(&g, &m, real + 61), Err(None));
        // The header must say what the datagram is: length, flags, stream.
        let good = message_1(real, 600);
        assert_eq!(verdict(&g, &good, real), Ok(()));
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(verdict(&g, &longer, real), Err(None));
        for (at, value) in [(4usize, 1u8), (13, 1), (3, 2), (24, 2)] {
            let mut bad = good.clone();
            bad[at] = value;
            assert_eq!(verdict(&g, &bad, real), Err(None), "byte {at}");
        }
    }

    #[test]
    fn revocations_cover_an_issuer_clock_a_minute_ahead() {
        let g = gate(DEFAULT_MAX_LIFETIME);
        let real = crate::crypto::handshake::unix_now();
        g.revoke(7, real - 100);
        for issued in [real - 200, real - 100, real - 40] {
            assert_eq!(
                verdict(&g, &message_1(issued, 600), real),
                Err(Some(TokenRefusal::Revoked)),
                "issued {issued}"
            );
        }
        assert_eq!(verdict(&g, &message_1(real - 39, 600), real), Ok(()));
    }
}
