//! WebSocket URLs: `ws://host:port/path` and `wss://host:port/path`.
//!
//! Parsing is strict on purpose: a URL that would silently do something else
//! than its author meant (a missing port, an `http://` scheme) is refused
//! with an error that says what to write instead.

use std::fmt;

/// A parsed WebSocket URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// `wss://`: TLS.
    pub tls: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port (always explicit).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// Why a WebSocket URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// `http://` or `https://`.
    #[error("`{url}` is an HTTP URL: write `{suggestion}` for a WebSocket")]
    HttpScheme {
        /// The URL given.
        url: String,
        /// The same URL with the WebSocket scheme.
        suggestion: String,
    },
    /// Neither `ws://` nor `wss://`.
    #[error("`{0}` has no WebSocket scheme: write ws://host:port/ (or wss:// for TLS)")]
    UnknownScheme(String),
    /// No host.
    #[error("`{0}` has no host: write ws://host:port/")]
    MissingHost(String),
    /// No port.
    #[error("`{url}` has no port: write `{suggestion}` (stt does not guess a port)")]
    MissingPort {
        /// The URL given.
        url: String,
        /// The URL with the scheme's usual port made explicit.
        suggestion: String,
    },
    /// A port that is not a number in 1..=65535.
    #[error("`{0}` has an invalid port: use 1..=65535")]
    BadPort(String),
}

impl WsUrl {
    /// Parses a `ws://` or `wss://` URL.
    pub fn parse(url: &str) -> Result<WsUrl, UrlError> {
        let trimmed = url.trim();
        let lower = trimmed.to_ascii_lowercase();
        let (tls, rest) = if let Some(r) = lower.strip_prefix("ws://") {
            (false, &trimmed[trimmed.len() - r.len()..])
        } else if let Some(r) = lower.strip_prefix("wss://") {
            (true, &trimmed[trimmed.len() - r.len()..])
        } else if lower.starts_with("http://") || lower.starts_with("https://") {
            let secure = lower.starts_with("https://");
            let tail = &trimmed[if secure { 8 } else { 7 }..];
            return Err(UrlError::HttpScheme {
                url: trimmed.to_owned(),
                suggestion: format!("{}://{tail}", if secure { "wss" } else { "ws" }),
            });
        } else {
            return Err(UrlError::UnknownScheme(trimmed.to_owned()));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        // No user info: credentials do not belong in a URL stt logs.
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some(end) = v6.find(']') else {
                return Err(UrlError::MissingHost(trimmed.to_owned()));
            };
            (&v6[..end], v6[end + 1..].strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(UrlError::MissingHost(trimmed.to_owned()));
        }
        let port = match port {
            None | Some("") => {
                let usual = if tls { 443 } else { 80 };
                let shown = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.to_owned()
                };
                return Err(UrlError::MissingPort {
                    url: trimmed.to_owned(),
                    suggestion: format!(
                        "{}://{shown}:{usual}{path}",
                        if tls { "wss" } else { "ws" }
                    ),
                });
            }
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(UrlError::BadPort(trimmed.to_owned())),
            },
        };
        Ok(WsUrl {
            tls,
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// `host:port`, with brackets around an IPv6 literal.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for WsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            if self.tls { "wss" } else { "ws" },
            self.authority(),
            self.path
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_urls() {
        let u = WsUrl::parse("ws://localhost:8081").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (false, "localhost", 8081, "/")
        );
        let u = WsUrl::parse("WSS://example.com:443/stt?x=1").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (true, 443, "/stt?x=1"));
        let u = WsUrl::parse("ws://[::1]:9000/a").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9000));
        assert_eq!(u.to_string(), "ws://[::1]:9000/a");
        assert_eq!(WsUrl::parse("ws://h:1?q").unwrap().path, "/?q");
    }

    #[test]
    fn bad_urls_say_what_to_write() {
        let e = WsUrl::parse("http://localhost:8081/x").unwrap_err();
        assert!(e.to_string().contains("ws://localhost:8081/x"), "{e}");
        let e = WsUrl::parse("https://h:443").unwrap_err();
        assert!(e.to_string().contains("wss://h:443"), "{e}");
        let e = WsUrl::parse("ws://localhost/path").unwrap_err();
        assert!(e.to_string().contains("ws://localhost:80/path"), "{e}");
        let e = WsUrl::parse("wss://[::1]").unwrap_err();
        assert!(e.to_string().contains("wss://[::1]:443/"), "{e}");
        assert!(matches!(
            WsUrl::parse("ftp://h:1"),
            Err(UrlError::UnknownScheme(_))
        ));
        assert!(matches!(
            WsUrl::parse("h:1"),
            Err(UrlError::UnknownScheme(_))
        ));
        assert!(matches!(
            WsUrl::parse("ws://:80"),
            Err(UrlError::MissingHost(_))
        ));
        assert!(matches!(
            WsUrl::parse("ws://h:0"),
            Err(UrlError::BadPort(_))
        ));
        assert!(matches!(
            WsUrl::parse("ws://h:99999"),
            Err(UrlError::BadPort(_))
        ));
    }
}
