//! Everything the daemon needs from disk, read and checked once before it starts: `redeemd
//! check` prints what this finds, and `redeemd run` starts from what it read.

use crate::config::Config;
use crate::config::scanner::ScannerKind;
use crate::config::wechat::WechatPayConfig;
use crate::ledger::schema;
use crate::model::claim_key::CodeKey;
use crate::secrets::{read_private_file, read_secret_file};
use crate::wechatpay::pay_sign::{Signer, Verifier, read_public_file};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct Findings {
    /// Each stops the daemon from starting.
    pub problems: Vec<String>,
    /// Worth knowing, but the daemon can start (a scanner may be plugged in later).
    pub warnings: Vec<String>,
}

/// What `run` reads from disk before it starts, read once: `check` and `run` both start
/// here, so they read the same files the same way, and `run` does not read them again.
pub struct Loaded {
    pub config: Config,
    /// WeChat Pay's request signer and response verifier, when `[wechat_pay]` is set.
    pub pay_keys: Option<PayKeys>,
    /// The local API's bearer token, when `http.token_file` is set.
    pub api_token: Option<Arc<str>>,
    /// The chain's claim secret, when `[store]` is set.
    pub code_key: Option<CodeKey>,
    pub warnings: Vec<String>,
}

pub struct PayKeys {
    pub signer: Signer,
    pub verifier: Verifier,
}

/// Reads and checks everything `run` needs: the secret files (the AppSecret is re-read at
/// every token fetch, so here it is only checked), the keys, the ledger, the scanners'
/// paths. `Err` lists every problem found, not only the first.
pub fn load(config: Config) -> Result<Loaded, Findings> {
    let mut f = Findings::default();
    if let Some(w) = &config.wechat
        && let Err(e) = read_secret_file(&w.secret_file)
    {
        f.problems.push(format!("wechat.secret_file: {e}"));
    }
    let api_token = match &config.http.token_file {
        None => None,
        Some(t) => match read_secret_file(t) {
            Ok(token) => Some(Arc::from(token)),
            Err(e) => {
                f.problems.push(format!("http.token_file: {e}"));
                None
            }
        },
    };
    let pay_keys = config
        .wechat_pay
        .as_ref()
        .and_then(|p| pay_keys(p, &mut f.problems));
    let code_key = config.store.as_ref().and_then(|s| {
        read_private_file(&s.code_key_file)
            .and_then(|bytes| CodeKey::from_bytes(&bytes))
            .map_err(|e| f.problems.push(format!("store.code_key_file: {e}")))
            .ok()
    });
    for (key, file) in config.store.iter().flat_map(|s| {
        [
            ("creds_file", &s.creds_file),
            ("user_file", &s.user_file),
            ("nkey_file", &s.nkey_file),
        ]
    }) {
        if let Some(path) = file
            && let Err(e) = read_private_file(path)
        {
            f.problems.push(format!("store.{key}: {e}"));
        }
    }
    check_database(&config, &mut f);
    for (i, s) in config.scanners.iter().enumerate() {
        if s.kind == ScannerKind::Stdin {
            continue;
        }
        if let Some(p) = &s.path
            && !p.exists()
        {
            f.warnings.push(format!(
                "scanner[{i}].path: {} does not exist now (redeemd keeps trying to open it)",
                p.display()
            ));
        }
    }
    if !f.problems.is_empty() {
        return Err(f);
    }
    Ok(Loaded {
        config,
        pay_keys,
        api_token,
        code_key,
        warnings: f.warnings,
    })
}

/// The merchant key and WeChat Pay's public key or certificates: a key that is loose,
/// unparsable or the wrong size is a problem naming the file and why.
fn pay_keys(p: &WechatPayConfig, problems: &mut Vec<String>) -> Option<PayKeys> {
    let signer = Signer::from_file(&p.private_key_file)
        .map_err(|e| problems.push(format!("wechat_pay.private_key_file: {e}")))
        .ok();
    let mut verifier = Verifier::default();
    let mut ok = true;
    if let (Some(id), Some(file)) = (&p.public_key_id, &p.public_key_file)
        && let Err(e) = read_public_file(file).and_then(|pem| {
            verifier
                .add_public_key_pem(id, &pem)
                .map_err(|e| format!("{}: {e}", file.display()))
        })
    {
        problems.push(format!("wechat_pay.public_key_file: {e}"));
        ok = false;
    }
    for file in &p.platform_cert_files {
        if let Err(e) = read_public_file(file).and_then(|pem| {
            verifier
                .add_certificate_pem(&pem)
                .map(|_| ())
                .map_err(|e| format!("{}: {e}", file.display()))
        }) {
            problems.push(format!("wechat_pay.platform_cert_files: {e}"));
            ok = false;
        }
    }
    let signer = signer.filter(|_| ok)?;
    Some(PayKeys { signer, verifier })
}

/// Whether this process may create `db` (its folders included) where the config puts it:
/// the first folder that exists up the path must be a folder, and writable.
fn creatable(db: &Path) -> Result<(), String> {
    let mut at = db.parent();
    while let Some(dir) = at.filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(meta) = std::fs::metadata(dir) {
            if !meta.is_dir() {
                return Err(format!(
                    "cannot create {}: {} is a file, not a folder",
                    db.display(),
                    dir.display()
                ));
            }
            return nix::unistd::access(
                dir,
                nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
            )
            .map_err(|e| {
                format!(
                    "cannot create {}: the folder {} is not writable by this user ({e})",
                    db.display(),
                    dir.display()
                )
            });
        }
        at = dir.parent();
    }
    Ok(())
}

fn check_database(config: &Config, f: &mut Findings) {
    let db = &config.database;
    if !db.exists() {
        if let Err(e) = creatable(db) {
            f.problems.push(format!("database: {e}"));
            return;
        }
        let dir = db.parent().filter(|d| !d.as_os_str().is_empty());
        match dir {
            Some(d) if !d.exists() => f.warnings.push(format!(
                "database: {} does not exist yet; it and its folder {} will be created",
                db.display(),
                d.display()
            )),
            _ => f.warnings.push(format!(
                "database: {} does not exist yet; it will be created",
                db.display()
            )),
        }
        return;
    }
    match schema::open_ro(db) {
        Err(e) => f.problems.push(format!("database: {e}")),
        Ok(conn) => {
            let path = db.display().to_string();
            if let Some(what) = schema::not_a_ledger(db, &conn) {
                let e = schema::OpenError::NotALedger { path, what };
                f.problems.push(format!("database: {e}"));
            } else if let Err(detail) = schema::quick_check(&conn) {
                f.problems.push(format!(
                    "database: {}",
                    schema::OpenError::Corrupt { path, detail }
                ));
            }
        }
    }
}
