//! The store guard's claim against a real `nats-server` (JetStream): a code claimed by one
//! till is refused to another, recognised as its own by the first after a restart, taken
//! over only once released, and a server that is gone is "unavailable" within the claim
//! timeout, never "no claim".

mod support;

use redeemd::config::StoreConfig;
use redeemd::store::claim::{ClaimValue, RELEASED};
use redeemd::store::guard::{Claim, Guard};
use std::time::{Duration, Instant};
use support::*;

fn config(url: &str) -> StoreConfig {
    StoreConfig {
        name: "store1".into(),
        nats_urls: vec![url.into()],
        creds_file: None,
        user_file: None,
        nkey_file: None,
        tls_ca_file: None,
        code_key_file: "unused".into(),
        claim_timeout: Duration::from_millis(500),
        claims_bucket: "redeemd_claims".into(),
        claim_ttl: Duration::from_secs(30 * 86_400),
    }
}

fn value(till: &str, state: &str) -> ClaimValue {
    ClaimValue {
        till: till.into(),
        row: Some(7),
        scan: format!("{till}-scan"),
        at: 1_796_000_000_000,
        api: "card".into(),
        state: state.into(),
    }
}

#[test]
fn one_code_one_till_through_restarts_and_releases() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut server = NatsServer::start();
    let cfg = config(&server.url());
    rt.block_on(async {
        let a = Guard::connect(&cfg, "till-a").await.expect("till A connects");
        let b = Guard::connect(&cfg, "till-b").await.expect("till B connects");
        let key = "a".repeat(64);
        let Claim::Taken { revision } = a.claim(&key, &value("till-a", "claimed")).await else {
            panic!("the first claim is taken");
        };
        match b.claim(&key, &value("till-b", "claimed")).await {
            Claim::Theirs(v) => assert_eq!(v.till, "till-a"),
            other => panic!("till B must see till A's claim: {other:?}"),
        }
        // Till A after a restart: a new connection, the same till.
        let a2 = Guard::connect(&cfg, "till-a").await.expect("till A again");
        assert!(matches!(a2.claim(&key, &value("till-a", "claimed")).await, Claim::Ours { .. }));
        // Released (a row cancelled and never sent): another till may take it, once.
        let released = a
            .update(&key, &value("till-a", RELEASED), revision)
            .await
            .expect("released with the revision read");
        assert!(a.update(&key, &value("till-a", "redeemed"), revision).await.is_err(), "never a blind write");
        assert!(released > revision);
        assert!(matches!(b.claim(&key, &value("till-b", "claimed")).await, Claim::Taken { .. }));
        assert!(matches!(a.claim(&key, &value("till-a", "claimed")).await, Claim::Theirs(v) if v.till == "till-b"));
    });
    server.kill();
    rt.block_on(async {
        let g = Guard::connect(&cfg, "till-a").await;
        // The client retries in the background: connecting does not fail, claiming does.
        let g = g.expect("connect returns while the server is down");
        let started = Instant::now();
        let c = g.claim(&"b".repeat(64), &value("till-a", "claimed")).await;
        assert!(matches!(c, Claim::Unavailable(_)), "{c:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "bounded by the claim timeout"
        );
    });
}

/// `redeemd check --connect` says whether the store's NATS answers and its claims bucket
/// opens: yes against a running server, a failure naming the store once it is gone.
#[test]
fn check_connect_reaches_the_store() {
    use std::os::unix::fs::PermissionsExt;
    let mut server = NatsServer::start();
    let till = Till::new(Setup::default());
    let text = std::fs::read_to_string(&till.config).expect("config");
    std::fs::write(
        &till.config,
        format!(
            "{text}\n[store]\nname = \"store1\"\nnats_url = \"{}\"\ncode_key_file = \"code.key\"\n",
            server.url()
        ),
    )
    .expect("config");
    let key = till.dir.path().join("code.key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef-chain").expect("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let check = || {
        let out = std::process::Command::new(bin())
            .args(["check", "--connect", "--config"])
            .arg(&till.config)
            .output()
            .expect("redeemd check --connect");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, text) = check();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("bucket redeemd_claims answers"), "{text}");
    server.kill();
    let (code, text) = check();
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("store store1"), "{text}");
}
