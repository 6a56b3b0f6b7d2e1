//! Fuzzes the document guard (`twofold::graphql::shape`): for any document
//! that parses, the guard answers in time linear in the document's size,
//! and whatever it accepts really does expand to at most the field limit.
#![no_main]

use std::collections::HashMap;

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, Selection, SelectionSet};
use async_graphql::Positioned;
use libfuzzer_sys::fuzz_target;
use twofold::graphql::shape::{check_document, ShapeLimits};

/// Counts fields by expanding every fragment (the naive way the guard
/// avoids), giving up once `budget` is passed.
fn expand(doc: &ExecutableDocument, set: &Positioned<SelectionSet>, budget: u64, seen: &mut HashMap<String, usize>) -> u64 {
    let mut count = 0u64;
    for item in &set.node.items {
        if count > budget {
            return count;
        }
        match &item.node {
            Selection::Field(f) => count += 1 + expand(doc, &f.node.selection_set, budget - count.min(budget), seen),
            Selection::InlineFragment(i) => count += expand(doc, &i.node.selection_set, budget - count.min(budget), seen),
            Selection::FragmentSpread(s) => {
                let name = s.node.fragment_name.node.to_string();
                let depth = seen.entry(name.clone()).or_default();
                if *depth > 0 {
                    return u64::MAX; // a cycle: the guard must have refused it
                }
                *depth += 1;
                if let Some(f) = doc.fragments.get(s.node.fragment_name.node.as_str()) {
                    count = count.saturating_add(expand(doc, &f.node.selection_set, budget - count.min(budget), seen));
                }
                *seen.get_mut(&name).expect("entry") -= 1;
            }
        }
    }
    count
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(doc) = async_graphql::parser::parse_query(text) else { return };
    let limits = ShapeLimits::default();
    let started = std::time::Instant::now();
    let verdict = check_document(&doc, limits);
    assert!(started.elapsed() < std::time::Duration::from_millis(200), "the guard must be linear in the document");
    if verdict.is_ok() {
        let operations: Vec<_> = match &doc.operations {
            DocumentOperations::Single(op) => vec![op],
            DocumentOperations::Multiple(ops) => ops.values().collect(),
        };
        for op in operations {
            let fields = expand(&doc, &op.node.selection_set, limits.max_fields, &mut HashMap::new());
            assert!(fields <= limits.max_fields, "accepted a document that expands to {fields} fields");
        }
    }
});
