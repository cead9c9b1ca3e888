//! The data flow runs one way (README, "Layout"): a module may import only what stands below
//! it. This test reads the sources and fails on any import that runs upward, naming the file,
//! the line and the rule, so the layering holds without anybody having to remember it.

use std::path::{Path, PathBuf};

/// (files or folders under src/, modules they must not import, why).
const RULES: &[(&[&str], &[&str], &str)] = &[
    (
        &["model"],
        &[
            "redeem", "ledger", "wechat", "api", "scanner", "store", "fleet", "config", "route",
            "outcome", "daemon",
        ],
        "the domain is at the bottom",
    ),
    (
        &["ledger"],
        &[
            "redeem", "wechat", "api", "scanner", "store", "fleet", "chain", "daemon",
        ],
        "the ledger stores rows; it does not drive redemptions",
    ),
    (
        &["scanner"],
        &["redeem", "ledger", "wechat", "api", "store", "daemon"],
        "a scanner only frames bytes",
    ),
    (
        &["wechat"],
        &["ledger", "redeem", "api", "scanner", "store", "daemon"],
        "clients know no SQL and no dispatcher",
    ),
    (
        &["sim"],
        &["ledger", "redeem", "api", "scanner", "store", "daemon"],
        "the simulators know only the wire",
    ),
    (
        &["outcome.rs"],
        &["redeem", "ledger", "daemon"],
        "answers are data",
    ),
    (
        &["config", "route.rs"],
        &["scanner", "redeem", "ledger", "wechat", "api", "daemon"],
        "config is below every part",
    ),
    (
        &["redeem"],
        &["api", "daemon", "fleet", "chain"],
        "the pipeline does not know who serves it",
    ),
    (
        &["store"],
        &[
            "redeem", "ledger", "api", "scanner", "daemon", "fleet", "chain",
        ],
        "the store guard answers claims; the intake decides what they mean",
    ),
    (
        &["chain"],
        &["redeem", "api", "scanner", "wechat", "daemon", "fleet"],
        "the till's events are the ledger's rows, published; nothing in the pipeline waits for them",
    ),
    (
        &["fleet"],
        &[
            "redeem", "ledger", "scanner", "wechat", "daemon", "chain", "api",
        ],
        "HQ reads the chain's stream; it knows no till's ledger or pipeline, and the till's API is not HQ's (both share src/http)",
    ),
    (
        &["http"],
        &[
            "api", "fleet", "ledger", "redeem", "scanner", "wechat", "store", "chain", "daemon",
        ],
        "what both HTTP faces share knows neither",
    ),
];

fn rust_files(at: &Path, out: &mut Vec<PathBuf>) {
    if at.is_file() {
        out.push(at.to_path_buf());
        return;
    }
    let Ok(entries) = std::fs::read_dir(at) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Whether `line` names `crate::module` (as a path, not as part of a longer name).
fn names_module(line: &str, module: &str) -> bool {
    let needle = format!("crate::{module}");
    line.match_indices(&needle).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + needle.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn no_module_imports_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for (places, forbidden, why) in RULES {
        for place in *places {
            let mut files = Vec::new();
            rust_files(&src.join(place), &mut files);
            assert!(!files.is_empty(), "src/{place} is gone: update the rules");
            for file in files {
                let text = std::fs::read_to_string(&file).expect("read");
                for (n, line) in text.lines().enumerate() {
                    if line.trim_start().starts_with("//") {
                        continue;
                    }
                    for m in *forbidden {
                        if names_module(line, m) {
                            found.push(format!(
                                "{}:{}: imports crate::{m} ({why}): {}",
                                file.strip_prefix(&src).unwrap_or(&file).display(),
                                n + 1,
                                line.trim()
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_check_sees_what_it_must() {
    assert!(names_module("use crate::redeem::state::State;", "redeem"));
    assert!(names_module("x: crate::ledger::Row", "ledger"));
    assert!(!names_module("use crate::redeemd_thing;", "redeem"));
    assert!(!names_module("use crate::model::state;", "redeem"));
}
