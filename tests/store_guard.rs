//! The store guard's claim against a real `nats-server` (JetStream): a code claimed by one
//! till is refused to another, recognised as its own by the first after a restart, taken
//! over only once released, and a server that is gone is "unavailable" within the claim
//! timeout, never "no claim".

mod support;

use redeemd::config::store::StoreConfig;
use redeemd::guard::bucket::{Claim, ClaimBucket};
use redeemd::model::claim::{ClaimValue, RELEASED};
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
        status_interval: Duration::from_secs(30),
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
        ..ClaimValue::default()
    }
}

#[test]
fn one_code_one_till_through_restarts_and_releases() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut server = NatsServer::start();
    let cfg = config(&server.url());
    rt.block_on(async {
        let a = ClaimBucket::connect(&cfg, "till-a").await.expect("till A connects");
        let b = ClaimBucket::connect(&cfg, "till-b").await.expect("till B connects");
        let key = "a".repeat(64);
        let Claim::Taken { .. } = a.claim(&key, &value("till-a", "claimed")).await else {
            panic!("the first claim is taken");
        };
        match b.claim(&key, &value("till-b", "claimed")).await {
            Claim::Theirs(v) => assert_eq!(v.till, "till-a"),
            other => panic!("till B must see till A's claim: {other:?}"),
        }
        // Till A after a restart: a new connection, the same till.
        let a2 = ClaimBucket::connect(&cfg, "till-a").await.expect("till A again");
        // Its own claim, written again (with the revision) to name the new scan.
        let Claim::Ours { revision } = a2.claim(&key, &value("till-a", "claimed")).await else {
            panic!("till A knows its own claim");
        };
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
        let g = ClaimBucket::connect(&cfg, "till-a").await;
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
        let out = redeemd(["check", "--connect"])
            .config(&till.config)
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

/// A store whose NATS wants a user and password: `user_file` (0600, "user:password") gets
/// the till in; a wrong password is "unavailable", never "no claim"; a key file others may
/// read is refused before anything is sent.
#[test]
fn user_file_logs_the_till_in() {
    use std::os::unix::fs::PermissionsExt;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = NatsServer::start_with(&["--user", "till1", "--pass", "s3cret-pass"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("store.user");
    let with = |text: &str, mode: u32| {
        std::fs::write(&file, text).expect("user file");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
        StoreConfig {
            user_file: Some(file.clone()),
            ..config(&server.url())
        }
    };
    rt.block_on(async {
        let g = ClaimBucket::connect(&with("till1:s3cret-pass\n", 0o600), "till-a")
            .await
            .expect("connects");
        let c = g.claim(&"c".repeat(64), &value("till-a", "claimed")).await;
        assert!(matches!(c, Claim::Taken { .. }), "{c:?}");
        let wrong = ClaimBucket::connect(&with("till1:wrong", 0o600), "till-a").await;
        if let Ok(g) = wrong {
            let c = g.claim(&"d".repeat(64), &value("till-a", "claimed")).await;
            assert!(matches!(c, Claim::Unavailable(_)), "{c:?}");
        }
        let open = ClaimBucket::connect(&with("till1:s3cret-pass", 0o644), "till-a").await;
        assert!(
            open.as_ref()
                .err()
                .is_some_and(|e| e.contains("store.user_file")),
            "a user file others may read is refused"
        );
    });
}

/// A till reads the registry with JetStream's direct get: the latest value of a key, a
/// deleted key and a key never written as nothing, a server without the stream (not
/// mirrored yet) as nothing, and a server that is gone as an error within the timeout.
#[test]
fn a_lookup_reads_the_latest_value_and_nothing_for_a_removed_or_unknown_key() {
    use redeemd::guard::product_coupons::{Lookup, subject};
    use redeemd::model::product_coupon::{CouponState, Details, Entry};
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut server = NatsServer::start();
    let entry = |state: CouponState| Entry {
        state,
        state_at: "2026-01-01T00:00:01+08:00".into(),
        state_rank: 1,
        last4: "0042".into(),
        openid: None,
        product_coupon_id: Some("1000000013".into()),
        stock_id: None,
        valid_begin_time: None,
        valid_end_time: None,
        details: Details::default(),
    };
    rt.block_on(async {
        let client = async_nats::connect(server.url()).await.expect("connect");
        let lookup = Lookup::new(client.clone(), Duration::from_millis(500));
        let (key, other) = ("a".repeat(64), "b".repeat(64));
        assert_eq!(lookup.find(&key).await, Ok(None), "no registry here yet");
        redeemd::fleet::streams::ensure_product_coupon_bucket(&client)
            .await
            .expect("the registry");
        let js = async_nats::jetstream::new(client.clone());
        for state in [CouponState::Effective, CouponState::Used] {
            js.publish(
                subject(&key),
                serde_json::to_vec(&entry(state)).expect("json").into(),
            )
            .await
            .expect("publish")
            .await
            .expect("stored");
        }
        assert_eq!(
            lookup.find(&key).await,
            Ok(Some(entry(CouponState::Used))),
            "the latest value"
        );
        assert_eq!(lookup.find(&other).await, Ok(None), "a key never written");
        let mut deleted = async_nats::HeaderMap::new();
        deleted.insert("KV-Operation", "DEL");
        js.publish_with_headers(subject(&key), deleted, "".into())
            .await
            .expect("publish")
            .await
            .expect("stored");
        assert_eq!(lookup.find(&key).await, Ok(None), "a deleted key");

        // A stream that does not serve direct gets (made without allow_direct) leaves
        // the direct get unanswered once; then the API is asked, and answers.
        redeemd::guard::nats::create_stream(
            &client,
            "$JS.API",
            &serde_json::json!({
                "name": redeemd::guard::redeemed::stream(),
                "subjects": [redeemd::guard::redeemed::subject(">")],
                "max_msgs_per_subject": 1,
                "storage": "file",
            }),
        )
        .await
        .expect("a stream without direct gets");
        let redeemed = redeemd::guard::redeemed::Lookup::new(client, Duration::from_millis(300));
        assert_eq!(redeemed.find(&key).await, Ok(None), "through the API");
        assert!(
            redeemed.find(&key).await.is_err(),
            "the direct get is unanswered"
        );
        for _ in 0..3 {
            assert_eq!(redeemed.find(&key).await, Ok(None), "through the API again");
        }
    });
    server.kill();
    rt.block_on(async {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(server.url())
            .await
            .expect("the client retries in the background");
        let lookup = Lookup::new(client, Duration::from_millis(300));
        let started = Instant::now();
        let found = lookup.find(&"a".repeat(64)).await;
        assert!(found.is_err(), "{found:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    });
}
