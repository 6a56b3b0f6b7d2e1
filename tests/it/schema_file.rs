//! `schema.graphql` is the SDL of the built schema.

#[test]
fn schema_graphql_matches_the_built_schema() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql at the repo root");
    let built = twofold::graphql::sdl();
    assert!(committed == built, "schema.graphql is stale: regenerate it with `cargo run -- schema > schema.graphql`");
}
