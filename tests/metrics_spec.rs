//! `docs/specs/metrics.md` lists exactly the metrics the code emits.

use std::collections::BTreeSet;
use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !matches!(name, "target" | "fuzz" | ".git") {
                sources(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(std::fs::read_to_string(&p).unwrap_or_default());
        }
    }
}

/// Names passed to `counter!`, `gauge!` or `histogram!`.
fn emitted(root: &Path) -> BTreeSet<String> {
    let mut files = Vec::new();
    for d in ["src", "core", "ingest", "workers", "backends", "fastpath", "analytics", "console"] {
        sources(&root.join(d), &mut files);
    }
    let mut names = BTreeSet::new();
    for text in files {
        for mac in ["counter!(", "gauge!(", "histogram!("] {
            for (i, _) in text.match_indices(mac) {
                // The name may follow on the next line (rustfmt).
                let Some(rest) = text[i + mac.len()..].trim_start().strip_prefix('"') else { continue };
                if let Some(end) = rest.find('"') {
                    names.insert(rest[..end].to_string());
                }
            }
        }
    }
    names
}

/// Names in the first column of the spec's tables.
fn documented(root: &Path) -> BTreeSet<String> {
    let spec = std::fs::read_to_string(root.join("docs/specs/metrics.md")).expect("docs/specs/metrics.md");
    spec.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("clearway_"))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_emitted_metric_is_documented_and_every_documented_metric_is_emitted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, doc) = (emitted(root), documented(root));
    assert!(code.len() > 20, "found only {} metric names in the code: the scan is broken", code.len());
    let undocumented: Vec<_> = code.difference(&doc).collect();
    let stale: Vec<_> = doc.difference(&code).collect();
    assert!(undocumented.is_empty(), "emitted but not in docs/specs/metrics.md: {undocumented:?}");
    assert!(stale.is_empty(), "in docs/specs/metrics.md but never emitted: {stale:?}");
}

#[test]
fn metric_names_follow_the_convention() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in emitted(root) {
        assert!(name.starts_with("clearway_"), "{name}");
        assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "{name}");
    }
}
