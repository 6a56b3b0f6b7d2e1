//! The layering rules of `src/lib.rs`, checked on the source text (one crate
//! cannot make the compiler enforce them).
use std::path::Path;

fn sources(dir: &str) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir") {
                stack.push(entry.expect("entry").path());
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((path.display().to_string(), std::fs::read_to_string(&path).expect("read source")));
        }
    }
    assert!(!out.is_empty(), "no sources under src/{dir}");
    out
}

/// Lines that mention `needle` as code (comments ignored).
fn offending(dir: &str, needles: &[&str]) -> Vec<String> {
    let mut hits = Vec::new();
    for (file, text) in sources(dir) {
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if needles.iter().any(|n| code.contains(n)) {
                hits.push(format!("{file}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    hits
}

#[test]
fn the_command_side_never_reads_the_read_model() {
    let hits = offending("command", &["entity::read", "crate::query", "crate::projection", "read::"]);
    assert!(hits.is_empty(), "src/command must not use read entities, queries or projections:\n{}", hits.join("\n"));
}

#[test]
fn queries_never_touch_write_or_log_tables() {
    let hits = offending(
        "query",
        &[
            "entity::write",
            "entity::log",
            "crate::command",
            "write::",
            "log::event",
            "FROM event",
            "customer_order",
            "order_line",
        ],
    );
    assert!(hits.is_empty(), "src/query must read only read entities:\n{}", hits.join("\n"));
}

#[test]
fn projections_never_touch_the_write_model_or_commands() {
    let hits = offending("projection", &["entity::write", "crate::command", "customer_order", "order_line"]);
    assert!(hits.is_empty(), "src/projection must not use the write model:\n{}", hits.join("\n"));
}

#[test]
fn the_graphql_layer_never_touches_the_database() {
    let hits = offending("graphql", &["entity::", "sea_orm", "sqlx"]);
    assert!(hits.is_empty(), "src/graphql must go through command and query:\n{}", hits.join("\n"));
}

#[test]
fn the_domain_does_no_io() {
    let hits = offending("domain", &["sea_orm", "sqlx", "tokio", "axum", "async_graphql", "reqwest"]);
    assert!(hits.is_empty(), "src/domain must stay pure:\n{}", hits.join("\n"));
}

#[test]
fn the_checker_catches_a_violation() {
    // The rule checker itself must be able to fail: it sees the read
    // entities that the query layer legitimately uses.
    assert!(!offending("query", &["entity::read"]).is_empty());
}
