//! The user's guide and the manual say what is: every path they name under `src/`,
//! `tests/`, `docs/`, `packaging/`, `hardware/` or `systemd/` exists, and every TOML
//! example in them is a config redeemd accepts (an unknown or misspelt key is refused by
//! the parser, so a renamed key fails here).

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown file under docs/, with their text.
fn pages() -> Vec<(String, String)> {
    let mut names = vec!["README.md".to_string(), "CHANGELOG.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    names.extend(docs);
    names
        .into_iter()
        .map(|n| {
            let text = std::fs::read_to_string(root().join(&n)).expect("a page");
            (n, text)
        })
        .collect()
}

#[test]
fn every_path_the_docs_name_exists() {
    let path = regex::Regex::new(
        r"(?:^|[^/\w.\-])(?:\.\./)?((?:src|tests|docs|packaging|hardware|systemd|benches|scripts)/[A-Za-z0-9_.\-/]*[A-Za-z0-9_])",
    )
    .expect("regex");
    let mut missing = Vec::new();
    let mut named = 0;
    for (page, text) in pages() {
        for m in path.captures_iter(&text) {
            let p = &m[1];
            // A glob or a placeholder names no one file.
            if p.contains('*') || p.contains("<") {
                continue;
            }
            named += 1;
            if !root().join(p).exists() {
                missing.push(format!("{page}: {p}"));
            }
        }
    }
    assert!(
        named > 30,
        "only {named} paths found: is the pattern right?"
    );
    assert!(
        missing.is_empty(),
        "named but not there:\n{}",
        missing.join("\n")
    );
}

/// A till config around a fragment: the fragment's own sections, and what it lacks.
fn till_config(fragment: &str) -> String {
    let mut text = String::from("database = \"ledger.db\"\ntill = \"docs-till\"\n");
    if !fragment.contains("[[scanner]]") {
        text.push_str("[[scanner]]\nname = \"s\"\ntype = \"stdin\"\n");
    }
    if !fragment.contains("[wechat]") {
        text.push_str("[wechat]\nappid = \"wx0\"\nsecret_file = \"appsecret\"\n");
    }
    if !fragment.contains("[[route]]") {
        text.push_str("[[route]]\npattern = \"[0-9]{12}\"\napi = \"card\"\n");
    }
    text.push_str(fragment);
    text
}

#[test]
fn every_toml_example_is_a_config_redeemd_accepts() {
    // SAFETY of the test: nothing else in this test binary reads the environment.
    unsafe { std::env::set_var("CREDENTIALS_DIRECTORY", "/run/credentials/redeemd.service") };
    let block = regex::Regex::new(r"(?s)```toml\n(.*?)```").expect("regex");
    let at = root().join("docs").join("example.toml");
    let mut checked = 0;
    let mut refused = Vec::new();
    for (page, text) in pages() {
        for m in block.captures_iter(&text) {
            let toml = &m[1];
            checked += 1;
            let result = if toml.contains("[hub]") {
                redeemd::config::fleet::FleetConfig::parse(toml, &at)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            } else if toml.contains("till =") {
                redeemd::config::Config::parse(toml, &at)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            } else {
                redeemd::config::Config::parse(&till_config(toml), &at)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            };
            if let Err(e) = result {
                refused.push(format!("{page}, TOML block {checked}: {e}"));
            }
        }
    }
    assert!(checked >= 5, "only {checked} TOML blocks found");
    assert!(refused.is_empty(), "{}", refused.join("\n\n"));
}

/// Whether the till's config knows `key` in `section` (`""`: the top level): a config with
/// that key alone is refused for anything but an unknown key (a wrong type, a missing
/// neighbour) when it is known.
fn till_knows(section: &str, key: &str) -> bool {
    let at = root().join("docs").join("example.toml");
    let fragment = match section {
        "" => format!("{key} = 0\n"),
        "scanner" | "route" => format!("[[{section}]]\n{key} = 0\n"),
        _ => format!("[{section}]\n{key} = 0\n"),
    };
    // Top-level keys go before any section.
    let text = if section.is_empty() {
        format!("{fragment}{}", till_config(""))
    } else {
        till_config(&fragment)
    };
    match redeemd::config::Config::parse(&text, &at) {
        Ok(_) => true,
        Err(e) => !e.to_string().contains(&format!("unknown field `{key}`")),
    }
}

#[test]
fn every_config_key_the_docs_name_is_one_the_config_knows() {
    // `[offline] accept`, `offline.online_wait`: the two ways the pages name a till's key.
    let sections = [
        "http",
        "wechat",
        "wechat_pay",
        "offline",
        "retry",
        "store",
        "scanner",
        "route",
    ];
    let spaced = regex::Regex::new(r"`\[(\w+)\] (\w+)`").expect("regex");
    let dotted = regex::Regex::new(r"`(\w+)\.(\w+)`").expect("regex");
    let mut named = 0;
    let mut unknown = Vec::new();
    for (page, text) in pages() {
        // HQ's hq.toml has sections of the same names: its page names them as `hq.toml`'s.
        if page.ends_with("store-and-chain.md") {
            continue;
        }
        for c in spaced
            .captures_iter(&text)
            .chain(dotted.captures_iter(&text))
        {
            let (section, key) = (&c[1], &c[2]);
            if !sections.contains(&section) {
                continue;
            }
            named += 1;
            if !till_knows(section, key) {
                unknown.push(format!("{page}: [{section}] {key}"));
            }
        }
    }
    assert!(named >= 5, "only {named} keys found: is the pattern right?");
    assert!(
        unknown.is_empty(),
        "keys the config does not know:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn the_key_check_tells_a_known_key_from_an_unknown_one() {
    assert!(till_knows("offline", "online_wait"));
    assert!(till_knows("http", "listen"));
    assert!(till_knows("scanner", "baud"));
    assert!(!till_knows("offline", "ofline"));
    assert!(!till_knows("http", "listen_on"));
    assert!(!till_knows("route", "stock"));
}
