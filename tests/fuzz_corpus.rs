//! Replays the fuzz corpora (and any crash artifacts kept as regressions) through the same
//! entry points the cargo-fuzz targets use, on stable Rust.

use std::path::Path;

#[test]
fn every_fuzz_corpus_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut total = 0;
    for (name, target) in redeemd::fuzzing::TARGETS {
        let mut files = 0;
        for dir in ["corpus", "artifacts"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for e in entries.flatten() {
                let data = std::fs::read(e.path()).unwrap();
                let result = std::panic::catch_unwind(|| target(&data));
                assert!(result.is_ok(), "{name}: {} panics", e.path().display());
                files += 1;
            }
        }
        assert!(files > 0, "no corpus for fuzz target {name}");
        println!("{name}: {files} inputs replayed");
        total += files;
    }
    println!("{total} fuzz inputs replayed");
}

#[test]
fn the_signed_seed_really_verifies() {
    // The pay_headers corpus starts from a response really signed with the test key, so the
    // fuzzer explores the verification path past the signature check too.
    use redeemd::wechatpay::pay_sign::{SignedHeaders, Signer, Verifier};
    let data =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/pay_headers/valid"))
            .unwrap();
    let text = String::from_utf8(data).unwrap();
    let lines: Vec<&str> = text.splitn(6, '\n').collect();
    let mut v = Verifier::default();
    let s = Signer::from_pem(include_bytes!("data/wechat-test-key.pem")).unwrap();
    v.add("PUB_KEY_ID_FUZZ", s.public_spki_der().unwrap());
    let h = SignedHeaders {
        timestamp: Some(lines[1]),
        nonce: Some(lines[2]),
        signature: Some(lines[3]),
        serial: Some(lines[4]),
    };
    assert_eq!(v.verify(&h, lines[5].as_bytes(), 1_700_000_000), Ok(()));
}
