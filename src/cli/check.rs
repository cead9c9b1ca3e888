//! `redeemd check`: everything `run` needs, validated without starting anything (the same
//! load `run` starts with); `--connect` also asks the store's NATS, `--quota` WeChat's daily
//! quotas.

use super::daemon::{block_on, load_all};
use redeemd::daemon::DaemonError;
use redeemd::daemon::load::Loaded;
use std::path::PathBuf;
use std::process::ExitCode;

pub(crate) fn check(path: PathBuf, quota: bool, connect: bool) -> ExitCode {
    let loaded = match load_all(&path, false) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let mut code = ExitCode::SUCCESS;
    if quota {
        code = quotas(&loaded);
    }
    if connect && store_answers(&loaded) != ExitCode::SUCCESS {
        code = ExitCode::FAILURE;
    }
    code
}

/// `check --connect`: the store's NATS answers and its claims bucket opens.
fn store_answers(loaded: &Loaded) -> ExitCode {
    let Some(store) = &loaded.config.store else {
        eprintln!("redeemd check --connect: no [store] section: nothing to connect to");
        return ExitCode::FAILURE;
    };
    let till = loaded.config.till.clone();
    block_on(async move {
        let guard = redeemd::guard::bucket::ClaimBucket::connect(store, &till)
            .await
            .map_err(DaemonError::Http)?;
        match guard.probe(std::time::Duration::from_secs(5)).await {
            Ok(()) => {
                println!(
                    "store {}: bucket {} answers on {}",
                    store.name,
                    store.claims_bucket,
                    store.nats_urls.join(", ")
                );
                Ok(())
            }
            Err(e) => Err(DaemonError::Http(format!("store {}: {e}", store.name))),
        }
    })
}

/// `check --quota`: WeChat's daily quota of every path redeemd calls.
fn quotas(loaded: &Loaded) -> ExitCode {
    let Some(w) = &loaded.config.wechat else {
        eprintln!("redeemd check --quota: no [wechat] section: the card API has no quota to read");
        return ExitCode::FAILURE;
    };
    let mut failed = false;
    let code = block_on(async {
        let card = redeemd::daemon::build_card(w)?;
        println!(
            "{:<22} {:>12} {:>12} {:>12}",
            "PATH", "DAILY LIMIT", "USED", "REMAINING"
        );
        for (path, q) in card.quotas().await {
            match q {
                Ok(q) => println!(
                    "{path:<22} {:>12} {:>12} {:>12}",
                    q.daily_limit, q.used, q.remain
                ),
                Err(e) => {
                    failed = true;
                    println!("{path:<22} cannot be read: {e}");
                }
            }
        }
        Ok(())
    });
    if failed { ExitCode::FAILURE } else { code }
}
