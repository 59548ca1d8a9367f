//! [`StaticFiles`]: a ready-made [`HttpHandler`] that serves the files under
//! one directory on the WebSocket port — a demo page and its scripts beside
//! the stt endpoint, with no other web server.
//!
//! What it refuses, and how: a path that does not start with `/`, has a bad
//! percent escape, a NUL or a backslash, or a segment `.` or `..` (also
//! percent-encoded) gets `400`; a segment starting with a `.` (hidden files
//! such as `.git`), a file that is not there, not a regular file, larger than
//! [`StaticFiles::max_file_size`], or that resolves (through a symlink)
//! outside the directory gets `404`.

use std::path::{Path, PathBuf};

use super::http::{HttpHandler, HttpRequest, HttpResponse};

/// Serves the files under a directory: `GET /a/b.js` answers with
/// `DIR/a/b.js`, and a path naming a directory (`/` too) with its
/// `index.html`. Content types follow the file's extension (html, js, mjs,
/// css, json, png, svg, map, wasm, and a few more; others are
/// `application/octet-stream`). Responses carry `Cache-Control: no-cache`.
///
/// Each request reads its file on the reactor thread, whole, into memory:
/// meant for a few small files (a demo page, a client library), not for a
/// website under load.
///
/// ```no_run
/// # use std::sync::Arc;
/// use stt::transport::ws::{StaticFiles, WsConfig};
///
/// let config = WsConfig {
///     http: Some(Arc::new(StaticFiles::new("examples/web")?)),
///     ..WsConfig::default()
/// };
/// # Ok::<(), stt::transport::ws::StaticFilesError>(())
/// ```
#[derive(Debug, Clone)]
pub struct StaticFiles {
    /// The directory, canonical (symlinks resolved).
    root: PathBuf,
    max_file_size: u64,
}

/// Why [`StaticFiles::new`] refused a directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StaticFilesError {
    /// The directory cannot be resolved (it does not exist, or cannot be
    /// read).
    #[error("cannot serve {path}: {source}")]
    Unreadable {
        /// The directory given.
        path: PathBuf,
        /// The error resolving it.
        source: std::io::Error,
    },
    /// The path names something other than a directory.
    #[error("cannot serve {0}: not a directory")]
    NotADirectory(PathBuf),
}

/// Why a request path maps to no file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Malformed, or an attempt to leave the directory: 400.
    Bad,
    /// Nothing to serve there: 404.
    Missing,
}

impl StaticFiles {
    /// Files larger than this are not served (404) by default: 16 MiB.
    pub const DEFAULT_MAX_FILE_SIZE: u64 = 16 << 20;

    /// Serves the files under `dir`, which must be a directory. Symlinks in
    /// `dir` itself are resolved now; those below it are followed only
    /// while they stay inside.
    pub fn new(dir: impl AsRef<Path>) -> Result<Self, StaticFilesError> {
        let dir = dir.as_ref();
        let root = dir
            .canonicalize()
            .map_err(|source| StaticFilesError::Unreadable {
                path: dir.to_path_buf(),
                source,
            })?;
        if !root.is_dir() {
            return Err(StaticFilesError::NotADirectory(dir.to_path_buf()));
        }
        Ok(StaticFiles {
            root,
            max_file_size: Self::DEFAULT_MAX_FILE_SIZE,
        })
    }

    /// The same, serving files of up to `bytes` bytes.
    pub fn with_max_file_size(mut self, bytes: u64) -> Self {
        self.max_file_size = bytes;
        self
    }

    /// The largest file served.
    pub fn max_file_size(&self) -> u64 {
        self.max_file_size
    }

    /// The directory served (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file a request path names, inside the directory.
    fn resolve(&self, path: &str) -> Result<PathBuf, Refusal> {
        let rest = path.strip_prefix('/').ok_or(Refusal::Bad)?;
        let decoded = percent_decode(rest).ok_or(Refusal::Bad)?;
        if decoded.contains(&0) || decoded.contains(&b'\\') {
            return Err(Refusal::Bad);
        }
        let decoded = String::from_utf8(decoded).map_err(|_| Refusal::Missing)?;
        let mut file = self.root.clone();
        for segment in decoded.split('/').filter(|s| !s.is_empty()) {
            match segment {
                "." | ".." => return Err(Refusal::Bad),
                s if s.starts_with('.') => return Err(Refusal::Missing),
                s => file.push(s),
            }
        }
        if decoded.is_empty() || decoded.ends_with('/') || file.is_dir() {
            file.push("index.html");
        }
        // Symlinks below the root are followed only while they stay in it.
        let real = file.canonicalize().map_err(|_| Refusal::Missing)?;
        if !real.starts_with(&self.root) {
            return Err(Refusal::Missing);
        }
        Ok(real)
    }

    /// The response for a request path.
    fn serve(&self, path: &str) -> HttpResponse {
        let file = match self.resolve(path) {
            Ok(file) => file,
            Err(Refusal::Bad) => return HttpResponse::text(400, "bad path"),
            Err(Refusal::Missing) => return HttpResponse::not_found(),
        };
        let fits =
            std::fs::metadata(&file).is_ok_and(|m| m.is_file() && m.len() <= self.max_file_size);
        if !fits {
            return HttpResponse::not_found();
        }
        match std::fs::read(&file) {
            // Checked again: the file may have grown since.
            Ok(body) if body.len() as u64 <= self.max_file_size => {
                HttpResponse::new(200, content_type(&file), body)
                    .with_header("Cache-Control", "no-cache")
            }
            Ok(_) => HttpResponse::not_found(),
            Err(e) => {
                tracing::debug!(file = %file.display(), error = %e, "static file unreadable");
                HttpResponse::not_found()
            }
        }
    }
}

impl HttpHandler for StaticFiles {
    fn handle(&self, request: &HttpRequest) -> HttpResponse {
        self.serve(&request.path)
    }
}

/// The content type for a file, by its extension.
fn content_type(file: &Path) -> &'static str {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "svg" => "image/svg+xml",
        "wasm" => "application/wasm",
        "ts" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `%XX` escapes decoded; `None` for a bad escape. (`+` stays `+`: it means
/// a space only in form queries.)
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "stt-static-{name}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("site/sub")).unwrap();
            std::fs::write(dir.join("site/index.html"), "<p>home</p>").unwrap();
            std::fs::write(dir.join("site/app.mjs"), "export {}").unwrap();
            std::fs::write(dir.join("site/sub/index.html"), "sub").unwrap();
            std::fs::write(dir.join("site/sub/a b.css"), "a{}").unwrap();
            std::fs::write(dir.join("site/.secret"), "hidden").unwrap();
            std::fs::write(dir.join("outside.txt"), "secret").unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn get(files: &StaticFiles, target: &str) -> HttpResponse {
        files.handle(&HttpRequest::new("GET", target))
    }

    #[test]
    fn files_index_and_content_types() {
        let s = Scratch::new("types");
        let files = StaticFiles::new(s.0.join("site")).unwrap();
        let r = get(&files, "/");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"<p>home</p>"[..]));
        assert!(r.content_type.starts_with("text/html"));
        let r = get(&files, "/app.mjs");
        assert_eq!(r.content_type, "text/javascript; charset=utf-8");
        assert_eq!(get(&files, "/sub").body, b"sub");
        assert_eq!(get(&files, "/sub/").body, b"sub");
        assert_eq!(get(&files, "//sub//a%20b.css").body, b"a{}");
        assert_eq!(get(&files, "/nope.js").status, 404);
        assert_eq!(get(&files, "/.secret").status, 404);
        let small = files.clone().with_max_file_size(3);
        assert_eq!(get(&small, "/index.html").status, 404);
        assert_eq!(content_type(Path::new("x.WASM")), "application/wasm");
        assert_eq!(content_type(Path::new("x.map")), "application/json");
        assert_eq!(content_type(Path::new("x.svg")), "image/svg+xml");
        assert_eq!(content_type(Path::new("x.png")), "image/png");
        assert_eq!(content_type(Path::new("x")), "application/octet-stream");
    }

    #[test]
    fn traversal_in_every_spelling_is_refused() {
        let s = Scratch::new("traversal");
        let files = StaticFiles::new(s.0.join("site")).unwrap();
        for target in [
            "/../outside.txt",
            "/sub/../../outside.txt",
            "/%2e%2e/outside.txt",
            "/%2E%2E%2Foutside.txt",
            "/sub/%2e%2e%2f%2e%2e%2foutside.txt",
            "/..%5coutside.txt",
            "/a%00b",
            "/%zz",
            "/%2",
            "/./index.html",
            "outside.txt",
            "*",
        ] {
            let r = get(&files, target);
            assert_eq!(r.status, 400, "{target}");
        }
        // Double encoding is a literal file name, which is not there.
        assert_eq!(get(&files, "/%252e%252e/outside.txt").status, 404);
        assert_eq!(get(&files, "/%ff%fe").status, 404);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_followed_only_inside() {
        let s = Scratch::new("links");
        let site = s.0.join("site");
        std::os::unix::fs::symlink(s.0.join("outside.txt"), site.join("out.txt")).unwrap();
        std::os::unix::fs::symlink(&s.0, site.join("up")).unwrap();
        std::os::unix::fs::symlink(site.join("app.mjs"), site.join("in.js")).unwrap();
        let files = StaticFiles::new(&site).unwrap();
        assert_eq!(get(&files, "/out.txt").status, 404);
        assert_eq!(get(&files, "/up/outside.txt").status, 404);
        assert_eq!(get(&files, "/in.js").body, b"export {}");
    }

    #[test]
    fn a_missing_or_plain_file_is_not_a_directory_to_serve() {
        let s = Scratch::new("new");
        assert!(matches!(
            StaticFiles::new(s.0.join("nope")),
            Err(StaticFilesError::Unreadable { .. })
        ));
        assert!(matches!(
            StaticFiles::new(s.0.join("outside.txt")),
            Err(StaticFilesError::NotADirectory(_))
        ));
    }
}
