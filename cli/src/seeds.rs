//! Seeds: where `serve`, `send` and `bench` read them, and how `stt seeds`
//! writes them.
//!
//! A seed is a secret (a node's identity, or the whole network's
//! membership), so it stays out of places others can read: no error
//! message, `--help` or `Debug` output holds one; a seed file must be its
//! owner's alone (mode 0600, as `stt seeds --out` creates it); a seed on
//! the command line, which every local user sees in `ps`, draws a warning.

use std::fmt;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};

use crate::Error;

/// Where the seeds come from.
#[derive(Args, Clone)]
pub struct SeedArgs {
    /// This node's identity seed, hex (at least 32 bytes). On the command
    /// line it is visible to every local user (`ps`): prefer --seed-file or
    /// the environment.
    #[arg(
        long,
        env = "STT_NODE_SEED",
        hide_env_values = true,
        value_name = "HEX"
    )]
    node_seed: Option<String>,
    /// The network's shared seed, hex (at least 32 bytes, the same on every
    /// node). On the command line it is visible to every local user (`ps`):
    /// prefer --seed-file or the environment.
    #[arg(
        long,
        env = "STT_SHARED_SEED",
        hide_env_values = true,
        value_name = "HEX"
    )]
    shared_seed: Option<String>,
    /// A file with `node_seed = HEX` and `shared_seed = HEX` lines (make one
    /// with `stt seeds --out FILE`), readable by its owner only (mode 0600);
    /// `-` reads it from standard input.
    #[arg(long, value_name = "FILE")]
    seed_file: Option<PathBuf>,
}

/// Never the seeds themselves.
impl fmt::Debug for SeedArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let given = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("SeedArgs")
            .field("node_seed", &given(&self.node_seed))
            .field("shared_seed", &given(&self.shared_seed))
            .field("seed_file", &self.seed_file)
            .finish()
    }
}

impl SeedArgs {
    /// The seeds, from flags/environment first, then the seed file.
    pub fn load(&self) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let (node, shared) = self.load_parts()?;
        let missing = |which: &str, flag: &str, env: &str| -> Error {
            format!("no {which}: pass --seed-file FILE (make one with `stt seeds --out FILE`), set {env}, or --{flag} HEX").into()
        };
        Ok((
            node.ok_or_else(|| missing("node seed", "node-seed", "STT_NODE_SEED"))?,
            shared.ok_or_else(|| missing("shared seed", "shared-seed", "STT_SHARED_SEED"))?,
        ))
    }

    /// Whether any seed source was given (flags, environment, file).
    pub fn given(&self) -> bool {
        self.node_seed.is_some() || self.shared_seed.is_some() || self.seed_file.is_some()
    }

    /// The shared seed alone (`stt token` needs no node seed).
    pub fn load_shared(&self) -> Result<Vec<u8>, Error> {
        self.load_parts()?.1.ok_or_else(|| {
            "no shared seed: pass --seed-file FILE, set STT_SHARED_SEED, --shared-seed HEX, or --issuer-key-file FILE".into()
        })
    }

    /// Whichever seeds are given.
    fn load_parts(&self) -> Result<Given, Error> {
        let mut node = self.node_seed.clone();
        let mut shared = self.shared_seed.clone();
        if let Some(path) = &self.seed_file {
            let text = read_secret_file(path)?;
            for line in text.lines() {
                if let Some((k, v)) = line.trim().split_once('=') {
                    match k.trim() {
                        "node_seed" if node.is_none() => node = Some(v.trim().to_owned()),
                        "shared_seed" if shared.is_none() => shared = Some(v.trim().to_owned()),
                        _ => {}
                    }
                }
            }
        }
        let node = node.map(|n| hex_decode("node_seed", &n)).transpose()?;
        let shared = shared.map(|s| hex_decode("shared_seed", &s)).transpose()?;
        Ok((node, shared))
    }
}

/// The node seed and the shared seed, each if given.
type Given = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Warns on standard error about each seed given as a command-line flag
/// (not from the environment): `ps` and `/proc/PID/cmdline` show it to
/// every local user, and shells keep it in their history.
pub fn warn_if_on_command_line(matches: &ArgMatches) {
    let flags: Vec<&str> = [
        ("node_seed", "--node-seed"),
        ("shared_seed", "--shared-seed"),
    ]
    .into_iter()
    .filter(|(id, _)| matches.value_source(id) == Some(ValueSource::CommandLine))
    .map(|(_, flag)| flag)
    .collect();
    if !flags.is_empty() {
        eprintln!(
            "warning: a seed given as {} is on the command line, where every local user \
             sees it (ps) and the shell history keeps it; use --seed-file FILE (mode 0600), --seed-file - (standard \
             input) or the environment (STT_NODE_SEED, STT_SHARED_SEED)",
            flags.join(" and ")
        );
    }
}

/// The seed file's text: from standard input for `-`; otherwise from a
/// file that only its owner may read.
///
/// A file others may read is refused, not just warned about (as ssh
/// refuses such a private key): a warning scrolls past in a service's log
/// while the seeds stay exposed, and a refusal costs one `chmod`.
pub fn read_secret_file(path: &Path) -> Result<String, Error> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("reading the seed file from standard input: {e}"))?;
        return Ok(text);
    }
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        // The mode of the file opened, not of whatever the path names a
        // moment later.
        let mode = file
            .metadata()
            .map_err(|e| format!("reading {}: {e}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "{path} is open to group or others (mode {:04o}): a seed file must be readable by \
                 its owner only. Run `chmod 600 {path}`, and make new seeds (`stt seeds`) if \
                 others may have read these",
                mode & 0o7777,
                path = path.display()
            )
            .into());
        }
    }
    file.read_to_string(&mut text)
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(text)
}

/// `stt seeds`.
#[derive(Args, Debug)]
pub struct SeedsArgs {
    /// Write the seed file to FILE, created readable by its owner only
    /// (mode 0600), instead of printing it.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Replace FILE if it exists.
    #[arg(long, requires = "out")]
    force: bool,
}

/// Prints a fresh seed file, or writes it to `--out`.
pub fn run(args: SeedsArgs) -> Result<(), Error> {
    let text = new_seed_file()?;
    match &args.out {
        None => print!("{text}"),
        Some(path) => {
            write_private(path, text.as_bytes(), args.force)?;
            println!("wrote a fresh seed pair to {} (mode 0600)", path.display());
        }
    }
    Ok(())
}

/// Creates `path` with mode 0600 and writes `bytes` to it; an existing
/// file is an error unless `force`.
pub(crate) fn write_private(path: &Path, bytes: &[u8], force: bool) -> Result<(), Error> {
    if force {
        // Removed, not truncated: a file that exists keeps its mode when
        // opened, and whoever holds it open would read the new seeds.
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("replacing {}: {e}", path.display()).into()),
        }
    }
    let mut options = std::fs::OpenOptions::new();
    // `create_new` (O_EXCL) also refuses to follow a symbolic link planted
    // at `path`.
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| -> Error {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!(
                "{} exists: pass --force to replace it (its seeds are lost)",
                path.display()
            )
            .into()
        } else {
            format!("creating {}: {e}", path.display()).into()
        }
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(())
}

/// A seed file with a fresh node seed and shared seed.
pub fn new_seed_file() -> Result<String, Error> {
    Ok(format!(
        "# stt seeds: keep this file secret. Give every node of a network the same\n# shared_seed and its own node_seed.\nnode_seed = {}\nshared_seed = {}\n",
        hex_encode(&crate::random_bytes(32)?),
        hex_encode(&crate::random_bytes(32)?)
    ))
}

/// Decodes hex; the error names `what`, never the text (it may be a seed).
pub fn hex_decode(what: &str, s: &str) -> Result<Vec<u8>, Error> {
    let s = s.trim();
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{what} must be hex (e.g. from `stt seeds`)").into());
    }
    Ok((0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
        .collect())
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
