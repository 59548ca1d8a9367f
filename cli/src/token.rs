//! Connect tokens on the command line: `stt token` issues one, and the
//! `--token` of `send` and `bench` reads one; `serve --audience` accepts
//! them.
//!
//! An issuing key comes from `--issuer-key-file FILE` (64 hex digits, a
//! file only its owner may read) or, by default, from the shared seed
//! (`docs/PROTOCOL.md` 14.1): a backend holding the seed file issues tokens
//! that servers holding it accept.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use clap::Args;
use stt::token::{ConnectToken, Issuer, IssuingKey, TokenConfig, TokenRequest};

use crate::Error;

/// `stt token`: issue a connect token.
#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The client's id (the application's name for it: a user or account
    /// number).
    #[arg(long)]
    client_id: u64,
    /// A server the token is valid for, as that server names itself
    /// (`stt serve --audience NAME`); repeat for several (at most 8).
    #[arg(long = "audience", value_name = "NAME", required = true)]
    audience: Vec<String>,
    /// Seconds from now during which the token admits new sessions.
    #[arg(long, default_value_t = 600)]
    lifetime: u64,
    /// Application data for the servers (up to 512 bytes of text), sealed
    /// in the ticket: the client cannot read it.
    #[arg(long)]
    data: Option<String>,
    /// Print JSON (`{"token": …, "client_id": …, "expires_at": …}`), as a
    /// backend's HTTPS answer would carry it, instead of the bare token.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    key: KeyArgs,
}

/// Where the issuing key comes from.
#[derive(Args, Debug)]
pub struct KeyArgs {
    /// A file holding the issuing key, 64 hex digits, readable by its owner
    /// only. Without it, the key derived from the shared seed.
    #[arg(long, value_name = "FILE")]
    issuer_key_file: Option<PathBuf>,
    #[command(flatten)]
    seeds: crate::SeedArgs,
}

impl KeyArgs {
    /// A server's seeds (`serve` needs both); with `throwaway` and no seed
    /// given at all, a fresh random pair for this run.
    pub fn seeds_for_server(&self, throwaway: bool) -> Result<(Vec<u8>, Vec<u8>), Error> {
        if throwaway && !self.seeds.given() {
            eprintln!(
                "no seeds given: a throwaway pair for this demo run (nothing else can join it)"
            );
            return Ok((crate::random_bytes(32)?, crate::random_bytes(32)?));
        }
        self.seeds.load()
    }

    /// The issuing key: from the key file, or derived from `shared_seed`
    /// (the one the server runs with).
    pub fn load_for(&self, shared_seed: &[u8]) -> Result<IssuingKey, Error> {
        match &self.issuer_key_file {
            Some(path) => read_key_file(path),
            None => Ok(IssuingKey::from_shared_seed(shared_seed)?),
        }
    }

    /// The issuing key: from the key file, or derived from the shared seed.
    pub fn load(&self) -> Result<IssuingKey, Error> {
        match &self.issuer_key_file {
            Some(path) => read_key_file(path),
            None => Ok(IssuingKey::from_shared_seed(&self.seeds.load_shared()?)?),
        }
    }
}

fn read_key_file(path: &Path) -> Result<IssuingKey, Error> {
    let text = crate::seeds::read_secret_file(path)?;
    IssuingKey::from_hex(&text).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// `stt token`.
pub fn run(args: TokenArgs) -> Result<(), Error> {
    let issuer = Issuer::new(args.key.load()?);
    let mut request = TokenRequest::new(args.client_id, args.audience.clone())
        .with_lifetime(Duration::from_secs(args.lifetime));
    if let Some(data) = &args.data {
        request = request.with_data(data.as_bytes().to_vec());
    }
    let token = issuer.issue(&request)?;
    if args.json {
        let expires = token
            .expires_at()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let json = serde_json::json!({
            "token": token.encode().as_str(),
            "client_id": token.client_id(),
            "expires_at": expires,
        });
        println!("{json}");
    } else {
        println!("{}", token.encode().as_str());
    }
    Ok(())
}

/// `stt issuer-key`: a fresh random issuing key.
#[derive(Args, Debug)]
pub struct IssuerKeyArgs {
    /// Write the key (64 hex digits) to FILE, created readable by its owner
    /// only (mode 0600). Give it to the backend (`stt token
    /// --issuer-key-file`) and to the servers (`stt serve --audience NAME
    /// --issuer-key-file`), and to nobody else.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
}

/// `stt issuer-key`.
pub fn new_key(args: IssuerKeyArgs) -> Result<(), Error> {
    let key = IssuingKey::generate()?;
    let mut text = key.to_hex();
    text.push('\n');
    crate::seeds::write_private(&args.out, text.as_bytes(), args.force)?;
    println!(
        "wrote a fresh issuing key (id {:08x}) to {} (mode 0600)",
        key.key_id(),
        args.out.display()
    );
    Ok(())
}

/// Reads a `--token` value: the token itself, `@FILE`, or `-` (standard
/// input). A token on the command line is visible to local users (`ps`),
/// but only until it expires.
pub fn read_token(arg: &str) -> Result<ConnectToken, Error> {
    let text = if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("reading the token from standard input: {e}"))?;
        s
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?
    } else {
        arg.to_owned()
    };
    let token = ConnectToken::parse(&text)?;
    if token.is_expired() {
        return Err("the connect token has expired: issue a fresh one (`stt token`)".into());
    }
    Ok(token)
}

/// `serve --audience`: the token configuration, if any name was given.
pub fn server_config(audience: &[String], key: &KeyArgs) -> Result<Option<TokenConfig>, Error> {
    if audience.is_empty() {
        if key.issuer_key_file.is_some() {
            return Err("--issuer-key-file needs --audience NAME: the names tokens must carry to be admitted here".into());
        }
        return Ok(None);
    }
    Ok(Some(match &key.issuer_key_file {
        Some(path) => TokenConfig::with_key(read_key_file(path)?, audience.iter().cloned()),
        None => TokenConfig::new(audience.iter().cloned()),
    }))
}
