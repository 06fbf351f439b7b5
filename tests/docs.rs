//! The documentation says what the code does (field report item 14): every configuration
//! key, dead-letter reason and metric the code has is documented for the user, the docs
//! point at no file the user does not have, and the numbers they quote about the hot path
//! are the code's.

use std::path::Path;

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// README.md and every page under docs/.
fn user_docs() -> Vec<(String, String)> {
    let mut docs = vec![("README.md".to_owned(), read("README.md"))];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut pages: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    for p in pages {
        let name = format!("docs/{}", p.file_name().unwrap().to_string_lossy());
        docs.push((name.clone(), read(&name)));
    }
    docs
}

#[test]
fn no_page_sends_the_reader_to_a_file_they_do_not_have() {
    for (name, text) in user_docs() {
        assert!(
            !text.contains("design.md"),
            "{name} refers to design.md, which is not part of vitalwatch"
        );
    }
}

#[test]
fn every_configuration_key_is_in_the_readme() {
    let readme = read("README.md");
    let defaults: toml::Table = toml::from_str(vitalwatch::settings::DEFAULT_TOML).unwrap();
    let mut missing = Vec::new();
    for (section, keys) in &defaults {
        let Some(keys) = keys.as_table() else {
            continue;
        };
        for key in keys.keys() {
            let dotted = format!("{section}.{key}");
            // The README's table lists keys per section; a key is documented when its
            // dotted name, or its name in the row of its section's table, appears.
            if !readme.contains(&dotted) && !readme.contains(&format!("`{key}`")) {
                missing.push(dotted);
            }
        }
    }
    assert!(missing.is_empty(), "undocumented keys: {missing:?}");
}

#[test]
fn every_dead_letter_reason_and_metric_is_in_the_readme() {
    let readme = read("README.md");
    for reason in vitalwatch::vitals::DecodeError::REASONS {
        assert!(
            readme.contains(&format!("`{reason}`")),
            "DLQ reason {reason} is not in README.md"
        );
    }
    for m in vitalwatch::metrics::CATALOGUE
        .iter()
        .chain(&vitalwatch::metrics::RULE_STATE_METRICS)
    {
        assert!(
            readme.contains(m.name),
            "metric {} is not in README.md",
            m.name
        );
    }
}

#[test]
fn the_architecture_quotes_the_batch_size_the_code_uses() {
    let arch = read("docs/architecture.md");
    let batch = vitalwatch::pipeline::ingest::BATCH;
    assert!(
        arch.contains(&format!("batches of ≤ {batch}")),
        "docs/architecture.md does not say batches of ≤ {batch}"
    );
    assert!(
        !arch.contains("batches of ≤ 64"),
        "docs/architecture.md still says 64"
    );
}
