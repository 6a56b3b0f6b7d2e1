//! `schema.graphql` is the SDL of the built schema.

#[test]
fn schema_graphql_matches_the_built_schema() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql at the repo root");
    let built = twofold::graphql::sdl();
    assert!(committed == built, "schema.graphql is stale: regenerate it with `cargo run -- schema > schema.graphql`");
}

/// Every mutation is a command: it answers an id and/or an ack with a
/// token, never a read view (a view is read with a query, from the read
/// models). Holds on the built schema, so a new mutation that returns a
/// view fails here.
#[test]
fn every_mutation_answers_only_ids_and_acks() {
    use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
    let sdl = twofold::graphql::sdl();
    let document = async_graphql::parser::parse_schema(&sdl).expect("the SDL parses");
    let objects: std::collections::HashMap<String, Vec<(String, String)>> = document
        .definitions
        .iter()
        .filter_map(|d| match d {
            TypeSystemDefinition::Type(t) => match &t.node.kind {
                TypeKind::Object(o) => Some((
                    t.node.name.node.to_string(),
                    o.fields.iter().map(|f| (f.node.name.node.to_string(), f.node.ty.node.base.to_string())).collect(),
                )),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let acknowledgement_fields = ["ID", "Token", "String", "Boolean"];
    let mutation = objects.get("Mutation").expect("a Mutation type");
    assert!(mutation.len() >= 10, "every command is a mutation: {mutation:?}");
    for (field, answer) in mutation {
        let answer = answer.trim_end_matches('!');
        let fields = objects.get(answer).unwrap_or_else(|| panic!("{field} answers {answer}, which is not an object"));
        for (name, ty) in fields {
            assert!(
                acknowledgement_fields.contains(&ty.trim_end_matches('!')),
                "{field} answers {answer}, whose field {name}: {ty} is not an id or an ack"
            );
        }
    }
}
