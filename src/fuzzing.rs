//! Entry points for the fuzz targets in `fuzz/` (cargo fuzz, libFuzzer). Each feeds arbitrary
//! bytes to one parser and asserts what must always hold; a panic is a finding. The test
//! suite replays the committed corpora through the same functions on stable Rust.

use crate::model::frame::Frame;
use crate::model::layout::Layout;
use crate::scanner::frame::{Framer, MAX_CODE_BYTES};
use crate::scanner::hidpos::HidPosDecoder;
use crate::scanner::keyboard::KeyboardDecoder;
use crate::wechat::card::{Answer, ConsumeReply, GetReply, parse_reply};
use crate::wechatpay::pay_sign::{SignedHeaders, Signer, Verifier, parse_authorization};
use std::sync::OnceLock;

fn check_frames(frames: Vec<Frame>) {
    for f in frames {
        match f {
            Frame::Code { code, .. } => {
                assert!(!code.is_empty() && code.len() <= MAX_CODE_BYTES);
                assert!(
                    !code.expose().chars().any(char::is_control),
                    "a control character in a code"
                );
            }
            Frame::Unreadable { raw, reason } => {
                assert!(raw.len() <= MAX_CODE_BYTES);
                assert!(reason.starts_with("unreadable scan"));
            }
        }
    }
}

/// The line framer, fed in two chunks split where the first byte says.
pub fn framer(data: &[u8]) {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(rest.len());
    let mut f = Framer::new(cut % 2 == 0);
    check_frames(f.push(&rest[..cut]));
    check_frames(f.push(&rest[cut..]));
}

/// The evdev keyboard decoder, in the layout the first byte picks.
pub fn keyboard(data: &[u8]) {
    let Some((&l, rest)) = data.split_first() else {
        return;
    };
    let layout = [Layout::Us, Layout::Uk, Layout::De, Layout::Fr][usize::from(l % 4)];
    check_frames(KeyboardDecoder::new(layout).push(rest));
}

/// The HID-POS reassembler, for the report id the first byte picks.
pub fn hidpos(data: &[u8]) {
    let Some((&id, rest)) = data.split_first() else {
        return;
    };
    let mut d = HidPosDecoder::new(id % 4);
    check_frames(d.push(rest));
    d.reset();
    check_frames(d.push(rest));
}

/// The key WeChat Pay "signs" with in the fuzz targets: the published test key.
fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let mut v = Verifier::default();
        if let Ok(s) = Signer::from_pem(include_bytes!("../tests/data/wechat-test-key.pem"))
            && let Ok(der) = s.public_spki_der()
        {
            v.add("PUB_KEY_ID_FUZZ", der);
        }
        v
    })
}

/// v3 `Authorization` parsing and response verification. Input lines: the Authorization
/// header, then Wechatpay-Timestamp, -Nonce, -Signature, -Serial; the rest is the body.
pub fn pay_headers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(6, '\n');
    let auth = lines.next().unwrap_or("");
    if let Ok(a) = parse_authorization(auth) {
        assert_eq!(a.timestamp.to_string().len(), 10);
    }
    let h = SignedHeaders {
        timestamp: lines.next(),
        nonce: lines.next(),
        signature: lines.next(),
        serial: lines.next(),
    };
    let body = lines.next().unwrap_or("").as_bytes();
    let now = h
        .timestamp
        .and_then(|t| t.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let _ = verifier().verify(&h, body, now);
}

/// The card API's JSON replies; the first byte picks the HTTP status.
pub fn wechat_json(data: &[u8]) {
    let Some((&s, body)) = data.split_first() else {
        return;
    };
    let status = 200 + u16::from(s % 4) * 100;
    match parse_reply::<GetReply>(status, body) {
        Answer::Errcode { errcode, .. } => assert_ne!(errcode, 0),
        Answer::Ok { .. } | Answer::Lost { .. } => {}
        Answer::NotSent(_) | Answer::NoToken(_) => panic!("parsing cannot produce these"),
    }
    let _ = parse_reply::<ConsumeReply>(status, body);
}

/// The config parser: any text gets a config or errors that say something.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = crate::config::Config::parse(&text, std::path::Path::new("/fuzz/redeemd.toml"))
    {
        assert!(!e.problems.is_empty());
        assert!(e.problems.iter().all(|p| !p.is_empty()));
    }
}

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// The targets by name, for replaying corpora.
pub const TARGETS: &[(&str, Target)] = &[
    ("framer", framer),
    ("keyboard", keyboard),
    ("hidpos", hidpos),
    ("pay_headers", pay_headers),
    ("wechat_json", wechat_json),
    ("config", config),
];
