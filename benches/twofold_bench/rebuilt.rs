//! The contract line `twofold rebuild` prints for each projection, and its
//! parser. Pure (no I/O, nothing of the bench's other modules), so the
//! integration test binary includes this file too and runs its unit tests:
//! the bench target has `harness = false`, which runs none.

/// One `rebuilt <name>: <N> events in <S> s (<R> events/s)` line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rebuilt {
    pub projection: String,
    pub events: u64,
    pub seconds: f64,
    pub events_per_second: f64,
}

/// Parses `rebuilt <name>: <N> events in <S> s (<R> events/s)`.
pub fn parse_rebuilt(line: &str) -> Option<Rebuilt> {
    let rest = line.trim().strip_prefix("rebuilt ")?;
    let (name, rest) = rest.split_once(':')?;
    let words: Vec<&str> = rest.split_whitespace().collect();
    // ["<N>", "events", "in", "<S>", "s", "(<R>", "events/s)"]
    if words.len() < 7 || words[1] != "events" || words[2] != "in" {
        return None;
    }
    Some(Rebuilt {
        projection: name.trim().to_owned(),
        events: words[0].parse().ok()?,
        seconds: words[3].parse().ok()?,
        events_per_second: words[5].trim_start_matches('(').parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_the_rebuild_contract_line() {
        let r =
            super::parse_rebuilt("rebuilt order_summary: 1000000 events in 8.5 s (117647 events/s)").expect("parses");
        assert_eq!(r.projection, "order_summary");
        assert_eq!(r.events, 1_000_000);
        assert_eq!(r.seconds, 8.5);
        assert_eq!(r.events_per_second, 117_647.0);
        // What is not the contract line is not taken for one.
        assert!(super::parse_rebuilt("rebuilding order_summary: 10 of 1000000 events").is_none());
        assert!(super::parse_rebuilt("rebuilt order_summary: many events in 8.5 s (1 events/s)").is_none());
    }
}
