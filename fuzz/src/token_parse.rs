//! A connect token's readers on arbitrary
//! input, as a client (or a CLI) reads whatever text it was handed.
//!
//! The input is used whole, three ways. Besides "never panics", it checks:
//!
//! - as binary (`ConnectToken::from_bytes`): a token that parses re-encodes
//!   (`to_bytes`) to exactly the input, satisfies the format's limits
//!   (`docs/PROTOCOL.md` 14.3: 1 to 8 audience names of 1 to 255 bytes, a
//!   ticket of 98 to 1000 bytes, expiry after issue and by the year 9999), its time accessors
//!   (`issued_at`, `expires_at`, `is_expired`) return, and its text form
//!   parses back to the same token;
//! - as the body of a text token (`"stt1."` and the input's unpadded
//!   base64url, written here independently of the crate): parses exactly
//!   when the binary does, to the same token;
//! - as text (when it is UTF-8, `ConnectToken::parse`): a token that parses
//!   re-encodes (`encode`) to exactly the text without its surrounding white
//!   space; a base64 error names an offset inside the text after the prefix.
use stt::token::{
    ConnectToken, TokenParseError, MAX_AUDIENCE, MAX_TICKET_LEN, MIN_TICKET_LEN, TOKEN_PREFIX,
};

/// The harness: see the module docs.
pub fn run(data: &[u8]) {
    let binary = ConnectToken::from_bytes(data);
    if let Ok(token) = &binary {
        assert_eq!(&token.to_bytes()[..], data, "from_bytes then to_bytes");
        well_formed(token);
        assert_eq!(ConnectToken::parse(&token.encode()).as_ref(), Ok(token));
    }
    let text = format!("{TOKEN_PREFIX}{}", base64url(data));
    assert_eq!(
        ConnectToken::parse(&text),
        binary,
        "text and binary disagree"
    );

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ConnectToken::parse(text) {
        Ok(token) => {
            assert_eq!(&token.encode()[..], text.trim(), "parse then encode");
            well_formed(&token);
        }
        Err(TokenParseError::Base64 { at }) => {
            let body = text.trim().strip_prefix(TOKEN_PREFIX).unwrap_or_default();
            assert!(at < body.len(), "base64 error at {at} of {}", body.len());
        }
        Err(_) => {}
    }
}

/// The limits of 14.3 hold for a token that parsed, and its accessors
/// take it (a client calls them on whatever text it was handed).
fn well_formed(token: &ConnectToken) {
    let bytes = token.to_bytes();
    let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    assert!(u64_at(17) > u64_at(9), "expires after it was issued");
    let _ = (token.issued_at(), token.expires_at(), token.is_expired());
    assert!((1..=MAX_AUDIENCE).contains(&token.audience().len()));
    assert!(token
        .audience()
        .iter()
        .all(|name| (1..=255).contains(&name.len())));
    assert!((MIN_TICKET_LEN..=MAX_TICKET_LEN).contains(&token.ticket().len()));
}

/// Unpadded base64url (RFC 4648 §5), written independently of the crate's.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut held = 0;
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 3);
    for &b in bytes {
        bits = (bits << 8) | u32::from(b);
        held += 8;
        while held >= 6 {
            held -= 6;
            out.push(char::from(ALPHABET[((bits >> held) & 63) as usize]));
        }
    }
    if held > 0 {
        out.push(char::from(ALPHABET[((bits << (6 - held)) & 63) as usize]));
    }
    out
}
