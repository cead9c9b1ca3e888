//! The data flow runs one way (README, "Layout"): a module may import only what stands below
//! it. This test reads the sources and fails on any import that runs upward, naming the file,
//! the line and the rule, so the layering holds without anybody having to remember it.

use std::path::{Path, PathBuf};

/// (files or folders under src/, modules they must not import, why).
const RULES: &[(&[&str], &[&str], &str)] = &[
    (
        &["model"],
        &[
            "redeem",
            "ledger",
            "wechat",
            "wechatpay",
            "api",
            "scanner",
            "guard",
            "fleet",
            "config",
            "route",
            "outcome",
            "daemon",
        ],
        "the domain is at the bottom",
    ),
    (
        &["ledger"],
        &[
            "redeem",
            "wechat",
            "wechatpay",
            "api",
            "scanner",
            "guard",
            "fleet",
            "chain",
            "daemon",
        ],
        "the ledger stores rows; it does not drive redemptions",
    ),
    (
        &["scanner"],
        &[
            "redeem",
            "ledger",
            "wechat",
            "wechatpay",
            "api",
            "guard",
            "daemon",
        ],
        "a scanner only frames bytes",
    ),
    (
        &["wechat", "wechatpay"],
        &[
            "ledger", "redeem", "api", "scanner", "guard", "daemon", "fleet",
        ],
        "clients know no SQL and no dispatcher",
    ),
    (
        &["sim"],
        &["ledger", "redeem", "api", "scanner", "guard", "daemon"],
        "the simulators know only the wire",
    ),
    (
        &["outcome.rs"],
        &["redeem", "ledger", "daemon"],
        "answers are data",
    ),
    (
        &["config", "route.rs"],
        &[
            "scanner",
            "redeem",
            "ledger",
            "wechat",
            "wechatpay",
            "api",
            "daemon",
        ],
        "config is below every part",
    ),
    (
        &["redeem"],
        &["api", "daemon", "fleet", "chain"],
        "the pipeline does not know who serves it",
    ),
    (
        &["guard"],
        &[
            "redeem", "ledger", "api", "scanner", "daemon", "fleet", "chain",
        ],
        "the store guard answers claims; the intake decides what they mean",
    ),
    (
        &["chain"],
        &[
            "redeem",
            "api",
            "scanner",
            "wechat",
            "wechatpay",
            "daemon",
            "fleet",
        ],
        "the till's events are the ledger's rows, published; nothing in the pipeline waits for them",
    ),
    (
        &["fleet"],
        &[
            "redeem", "ledger", "scanner", "daemon", "chain", "api", "wechat",
        ],
        "HQ reads the chain's stream and listens to WeChat Pay (src/wechatpay); it knows no till's ledger, pipeline or card client, and the till's API is not HQ's (both share src/http)",
    ),
    (
        &["http"],
        &[
            "api",
            "fleet",
            "ledger",
            "redeem",
            "scanner",
            "wechat",
            "wechatpay",
            "guard",
            "chain",
            "daemon",
        ],
        "what both HTTP faces share knows neither",
    ),
    (
        &["guard"],
        &["ledger"],
        "the store guard's bucket knows no till's ledger (the ledger's side is ledger::claims)",
    ),
    (
        &["daemon"],
        &["cli"],
        "the daemon is started by the command line, not the other way",
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
            for m in *forbidden {
                assert!(
                    src.join(m).is_dir() || src.join(format!("{m}.rs")).is_file(),
                    "a rule names crate::{m}, which does not exist: update the rules"
                );
            }
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

/// The sibling modules a file of a folder imports: `super::x` and `crate::folder::x`.
/// Test code (after `#[cfg(test)]`, and `*_tests.rs` files) does not count: a test may
/// reach across.
fn sibling_imports(text: &str, folder: &str, siblings: &[String]) -> Vec<String> {
    let production = text.split("#[cfg(test)]").next().unwrap_or("");
    let in_crate = format!("crate::{}::", folder.replace('/', "::"));
    let mut found = Vec::new();
    for line in production.lines() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        for s in siblings {
            let named = [format!("super::{s}"), format!("{in_crate}{s}")]
                .iter()
                .any(|needle| {
                    line.match_indices(needle.as_str()).any(|(at, _)| {
                        let before = line[..at].chars().next_back();
                        let after = line[at + needle.len()..].chars().next();
                        !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
                            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
                    })
                });
            if named && !found.contains(s) {
                found.push(s.clone());
            }
        }
    }
    found
}

/// A circle among the files of one folder: a path back to where it started.
fn circle(edges: &[(String, Vec<String>)]) -> Option<Vec<String>> {
    fn visit(
        at: &str,
        edges: &[(String, Vec<String>)],
        path: &mut Vec<String>,
        done: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == at) {
            let mut c = path[i..].to_vec();
            c.push(at.to_string());
            return Some(c);
        }
        if done.iter().any(|d| d == at) {
            return None;
        }
        path.push(at.to_string());
        let next = edges
            .iter()
            .find(|(f, _)| f == at)
            .map(|(_, to)| to.clone())
            .unwrap_or_default();
        for n in next {
            if let Some(c) = visit(&n, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.push(at.to_string());
        None
    }
    let mut done = Vec::new();
    for (from, _) in edges {
        if let Some(c) = visit(from, edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_two_files_of_one_folder_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut folders = vec![src.clone()];
    let mut found = Vec::new();
    while let Some(dir) = folders.pop() {
        let mut files = Vec::new();
        for e in std::fs::read_dir(&dir).expect("read src").flatten() {
            let p = e.path();
            if p.is_dir() {
                folders.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
        if dir == src {
            continue;
        }
        let stem = |p: &PathBuf| {
            p.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let siblings: Vec<String> = files
            .iter()
            .map(stem)
            .filter(|s| s != "mod" && !s.ends_with("_tests"))
            .collect();
        let folder = dir
            .strip_prefix(&src)
            .unwrap_or(&dir)
            .to_string_lossy()
            .into_owned();
        let edges: Vec<(String, Vec<String>)> = files
            .iter()
            .filter(|p| siblings.contains(&stem(p)))
            .map(|p| {
                let text = std::fs::read_to_string(p).expect("read");
                let to = sibling_imports(&text, &folder, &siblings)
                    .into_iter()
                    .filter(|s| *s != stem(p))
                    .collect();
                (stem(p), to)
            })
            .collect();
        if let Some(c) = circle(&edges) {
            found.push(format!("src/{folder}: {}", c.join(" → ")));
        }
    }
    assert!(
        found.is_empty(),
        "circles between files of one folder:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_circle_check_sees_what_it_must() {
    let sib = vec!["scans".to_string(), "claims".to_string()];
    assert_eq!(
        sibling_imports("use super::scans::NewScan;", "ledger", &sib),
        vec!["scans"]
    );
    assert_eq!(
        sibling_imports("use crate::ledger::claims::Dirty;", "ledger", &sib),
        vec!["claims"]
    );
    assert!(
        sibling_imports(
            "// super::scans\n#[cfg(test)]\nuse super::claims;",
            "ledger",
            &sib
        )
        .is_empty()
    );
    let edges = |e: &[(&str, &[&str])]| -> Vec<(String, Vec<String>)> {
        e.iter()
            .map(|(f, t)| (f.to_string(), t.iter().map(|s| s.to_string()).collect()))
            .collect()
    };
    assert!(circle(&edges(&[("a", &["b"]), ("b", &["c"]), ("c", &[])])).is_none());
    assert_eq!(
        circle(&edges(&[("a", &["b"]), ("b", &["a"])])),
        Some(vec!["a".to_string(), "b".to_string(), "a".to_string()])
    );
}

#[test]
fn the_check_sees_what_it_must() {
    assert!(names_module("use crate::redeem::state::State;", "redeem"));
    assert!(names_module("x: crate::ledger::Row", "ledger"));
    assert!(!names_module("use crate::redeemd_thing;", "redeem"));
    assert!(!names_module("use crate::model::state;", "redeem"));
}
