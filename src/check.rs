//! `redeemd check`: everything `run` needs, validated without starting anything. `run`
//! performs the same checks first.

use crate::config::{Config, ScannerKind};
use crate::ledger::schema;
use crate::secrets::read_secret_file;
use crate::wechat::pay_sign::{Signer, Verifier, read_public_file};

#[derive(Debug, Default)]
pub struct Findings {
    /// Each stops the daemon from starting.
    pub problems: Vec<String>,
    /// Worth knowing, but the daemon can start (a scanner may be plugged in later).
    pub warnings: Vec<String>,
}

pub fn check(config: &Config) -> Findings {
    let mut f = Findings::default();
    if let Some(w) = &config.wechat
        && let Err(e) = read_secret_file(&w.secret_file)
    {
        f.problems.push(format!("wechat.secret_file: {e}"));
    }
    if let Some(t) = &config.http.token_file
        && let Err(e) = read_secret_file(t)
    {
        f.problems.push(format!("http.token_file: {e}"));
    }
    if let Some(p) = &config.wechat_pay {
        if let Err(e) = Signer::from_file(&p.private_key_file) {
            f.problems.push(format!("wechat_pay.private_key_file: {e}"));
        }
        let mut v = Verifier::default();
        if let (Some(id), Some(file)) = (&p.public_key_id, &p.public_key_file)
            && let Err(e) = read_public_file(file).and_then(|pem| {
                v.add_public_key_pem(id, &pem)
                    .map_err(|e| format!("{}: {e}", file.display()))
            })
        {
            f.problems.push(format!("wechat_pay.public_key_file: {e}"));
        }
        for file in &p.platform_cert_files {
            if let Err(e) = read_public_file(file).and_then(|pem| {
                v.add_certificate_pem(&pem)
                    .map(|_| ())
                    .map_err(|e| format!("{}: {e}", file.display()))
            }) {
                f.problems
                    .push(format!("wechat_pay.platform_cert_files: {e}"));
            }
        }
    }
    check_database(config, &mut f);
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
    f
}

fn check_database(config: &Config, f: &mut Findings) {
    let db = &config.database;
    if !db.exists() {
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
            if let Err(detail) = schema::quick_check(&conn) {
                f.problems.push(format!(
                    "database: {}",
                    schema::OpenError::Corrupt {
                        path: db.display().to_string(),
                        detail
                    }
                ));
            }
        }
    }
}
