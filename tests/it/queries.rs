//! Queries: every field on both backends, pagination, DataLoader batching,
//! read-your-own-writes.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;

const PAGE: &str = "query($first: Int, $after: String) { orders(first: $first, after: $after) {
    edges { cursor node { id customerName customer { name ordersPlaced } lines { title product { sku unitsSold } } } }
    pageInfo { hasNextPage hasPreviousPage endCursor } } }";

on_both_backends!(orders_page_newest_first_with_cursors, |app| async {
    let seed = app.seed().await;
    let mut placed = Vec::new();
    for i in 0..7 {
        placed.push(app.place_order(&seed.customer, &[(&seed.tea, i + 1)]).await.0);
    }
    app.settle().await;
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let d = app.data(PAGE, json!({ "first": 3, "after": after })).await;
        let conn = &d["orders"];
        seen.extend(conn["edges"].as_array().expect("edges").iter().map(|e| s(&e["node"]["id"])));
        if !conn["pageInfo"]["hasNextPage"].as_bool().expect("bool") {
            break;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
    placed.reverse();
    assert_eq!(seen, placed, "every order once, newest first");
    let bad = app.gql(PAGE, json!({ "first": 3, "after": "garbage" })).await;
    assert_eq!(code(&bad), "VALIDATION");
    let too_big = app.gql(PAGE, json!({ "first": 101 })).await;
    assert_eq!(code(&too_big), "VALIDATION");
});

on_both_backends!(a_page_of_orders_costs_a_constant_number_of_statements, |app| async {
    let (t1, _) = app.add_product(&format!("A-{}", short()), "Alpha", 100).await;
    let (t2, _) = app.add_product(&format!("B-{}", short()), "Beta", 200).await;
    let mut customers = Vec::new();
    for i in 0..10 {
        customers
            .push(app.register_customer(&format!("Customer {i}"), &format!("c{i}-{}@example.com", short())).await.0);
    }
    for i in 0..100 {
        app.place_order(&customers[i % customers.len()], &[(&t1, 1), (&t2, 2)]).await;
    }
    // The views themselves must hold every order: a single-key read at the
    // last token is no barrier (it may fold the write without the view moving).
    app.settle().await;
    let count = |first: i64| {
        let app = &app;
        async move {
            let before = app.services.reads.statement_count();
            let d = app.data(PAGE, json!({ "first": first })).await;
            assert_eq!(d["orders"]["edges"].as_array().expect("edges").len() as i64, first);
            app.services.reads.statement_count() - before
        }
    };
    let small = count(5).await;
    let large = count(100).await;
    assert_eq!(small, large, "statements must not grow with the page size");
    assert!(large <= 3, "orders + customers + products, got {large}");
});

on_both_backends!(every_query_field_answers_from_the_read_views, |app| async {
    let seed = app.seed().await;
    let (order, token) = app.place_order(&seed.customer, &[(&seed.tea, 2)]).await;
    let today = chrono::Utc::now().date_naive();
    let d = app
        .data(
            "query($o: ID!, $c: ID!, $t: Token, $from: NaiveDate!, $to: NaiveDate!) {
               order(id: $o, consistentWith: $t) { id status totalCents placedAt customerEmail }
               orders(status: PLACED, consistentWith: $t) { edges { node { id } } }
               customer(id: $c, consistentWith: $t) { id name email ordersOpen lastOrderAt }
               customers(first: 5, consistentWith: $t) { edges { node { id } } pageInfo { hasNextPage } }
               products(search: \"TEA\", consistentWith: $t) { edges { node { title unitsSold } } }
               topProducts(limit: 1, consistentWith: $t) { title }
               dailySales(from: $from, to: $to, consistentWith: $t) { day ordersPlaced grossCents netCents }
               orderActivity(orderId: $o, consistentWith: $t) { eventType description version }
               projections { name mode status checkpoint lag eventsApplied }
             }",
            json!({ "o": order, "c": seed.customer, "t": token, "from": today.to_string(), "to": today.to_string() }),
        )
        .await;
    assert_eq!(d["order"]["totalCents"], 900);
    assert_eq!(d["orders"]["edges"].as_array().expect("edges").len(), 1);
    assert_eq!(big(&d["customer"]["ordersOpen"]), 1);
    assert!(d["customer"]["lastOrderAt"].is_string());
    assert_eq!(d["customers"]["edges"].as_array().expect("edges").len(), 1);
    assert_eq!(d["products"]["edges"][0]["node"]["title"], "Green tea");
    assert_eq!(big(&d["products"]["edges"][0]["node"]["unitsSold"]), 2);
    assert_eq!(d["topProducts"][0]["title"], "Green tea");
    assert_eq!(big(&d["dailySales"][0]["ordersPlaced"]), 1);
    assert_eq!(big(&d["dailySales"][0]["netCents"]), 900);
    assert_eq!(d["orderActivity"][0]["eventType"], "OrderPlaced");
    assert_eq!(d["projections"].as_array().expect("list").len(), 5);
    // Search matches titles case-insensitively; a search with no word to
    // look for (`%` is no pattern: there is none) is the caller's mistake.
    let nothing = app.gql("{ products(search: \"%\") { edges { node { id } } } }", json!({})).await;
    assert_eq!(code(&nothing), "VALIDATION");
    let title = app.data("{ products(search: \"green\") { edges { node { id } } } }", json!({})).await;
    assert_eq!(title["products"]["edges"].as_array().expect("edges").len(), 1);
    // Bad ranges and limits are validation errors.
    let backwards = app.gql("{ dailySales(from: \"2026-02-01\", to: \"2026-01-01\") { day } }", json!({})).await;
    assert_eq!(code(&backwards), "VALIDATION");
    let top = app.gql("{ topProducts(limit: 0) { title } }", json!({})).await;
    assert_eq!(code(&top), "VALIDATION");
    let unknown = app.data("{ order(id: \"00000000-0000-0000-0000-000000000000\") { id } }", json!({})).await;
    assert!(unknown["order"].is_null());
});

on_both_backends!(consistent_with_reads_your_own_write_under_load, |app| async {
    let seed = app.seed().await;
    let stop = Arc::new(AtomicBool::new(false));
    // Background load: other clients placing and cancelling orders.
    let background = {
        let (base, customer, cake, stop) = (app.base.clone(), seed.customer.clone(), seed.cake.clone(), stop.clone());
        tokio::spawn(async move {
            let client = http_client();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 500 {
                let body = json!({ "query": "mutation($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, lines: [{productId: $p, quantity: 1}]}) { id } }",
                                   "variables": { "c": customer, "p": cake } });
                let _ = client.post(format!("{base}/graphql")).json(&body).send().await;
                n += 1;
            }
        })
    };
    for _ in 0..30 {
        let (order, token) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
        let d = app
            .data(
                "query($id: ID!, $t: Token) { order(id: $id, consistentWith: $t) { id status } }",
                json!({ "id": order, "t": token }),
            )
            .await;
        assert_eq!(d["order"]["id"], order, "the order is visible at once with its token");
    }
    stop.store(true, Ordering::Relaxed);
    background.await.expect("background load");
});

on_both_backends!(a_token_from_the_future_is_not_visible_yet, |app| async {
    let future = "999999999.999999999";
    let started = std::time::Instant::now();
    let r = app
        .gql("query($t: Token) { orders(consistentWith: $t) { edges { node { id } } } }", json!({ "t": future }))
        .await;
    assert_eq!(code(&r), "NOT_VISIBLE_YET");
    assert!(started.elapsed() >= std::time::Duration::from_millis(1900), "it waited the default 2 s");
    let bad = app.gql("query { orders(consistentWith: \"nonsense\") { edges { node { id } } } }", json!({})).await;
    assert_eq!(code(&bad), "VALIDATION");
});

// A page reads only the columns its selected fields show (issue 25). Each
// field asked alone, through `edges { node }`, through `nodes`, and inside
// a fragment, answers exactly what the whole row answers: a field mapped
// to the wrong column, or to none, would show an empty value here.
on_both_backends!(a_page_reads_only_the_columns_its_fields_show_and_each_answers_the_whole_rows_value, |app| async {
    let seed = app.seed().await;
    let (shipped, _) = app.place_order(&seed.customer, &[(&seed.tea, 2), (&seed.cake, 1)]).await;
    app.ship_order(&shipped).await;
    let (cancelled, _) = app.place_order(&seed.customer, &[(&seed.cake, 3)]).await;
    app.cancel_order(&cancelled, Some("changed my mind")).await;
    let (_, token) = app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    let fields = [
        "customerId",
        "customerName",
        "customerEmail",
        "customer { id name }",
        "lines { productId sku title quantity unitPriceCents lineTotalCents product { sku } }",
        "lineCount",
        "totalCents",
        "status",
        "cancelReason",
        "carrier",
        "trackingNumber",
        "placedAt",
        "cancelledAt",
        "shippedAt",
        "channel",
        "version",
        "__typename",
    ];
    let page = |selection: String| {
        format!("query($t: Token) {{ orders(first: 10, consistentWith: $t) {{ edges {{ cursor node {{ id {selection} }} }} nodes {{ id }} }} }}")
    };
    // What each order is, read whole: `order(id:)` reads the entire row.
    let listed = app.data(&page(String::new()), json!({ "t": token })).await;
    let mut rows = Vec::new();
    for edge in listed["orders"]["edges"].as_array().expect("edges") {
        let one = format!("query($id: ID!) {{ order(id: $id) {{ id {} }} }}", fields.join(" "));
        let order = app.data(&one, json!({ "id": edge["node"]["id"] })).await;
        rows.push(json!({ "cursor": edge["cursor"], "node": order["order"] }));
    }
    assert_eq!(rows.len(), 3, "{listed}");
    assert_eq!(rows[2]["node"]["carrier"], "DHL", "the reference is the whole row: {}", rows[2]);
    let value_of = |node: &Value, field: &str| {
        let name = field.split_whitespace().next().expect("name");
        node[name].clone()
    };
    for field in fields {
        let shapes = [
            page(field.to_owned()),
            format!("query($t: Token) {{ orders(first: 10, consistentWith: $t) {{ edges {{ cursor node {{ id ... on OrderSummary {{ {field} }} }} }} }} }}"),
            format!("query($t: Token) {{ orders(first: 10, consistentWith: $t) {{ edges {{ cursor node {{ id ...F }} }} }} }} fragment F on OrderSummary {{ {field} }}"),
        ];
        for shape in shapes {
            let alone = app.data(&shape, json!({ "t": token })).await;
            let edges = alone["orders"]["edges"].as_array().expect("edges");
            for (edge, row) in edges.iter().zip(&rows) {
                assert_eq!(edge["cursor"], row["cursor"], "{shape}");
                assert_eq!(edge["node"]["id"], row["node"]["id"], "{shape}");
                assert_eq!(value_of(&edge["node"], field), value_of(&row["node"], field), "{field} in {shape}");
            }
        }
        let nodes = app
            .data(
                &format!("query($t: Token) {{ orders(first: 10, consistentWith: $t) {{ nodes {{ id {field} }} }} }}"),
                json!({ "t": token }),
            )
            .await;
        for (node, row) in nodes["orders"]["nodes"].as_array().expect("nodes").iter().zip(&rows) {
            assert_eq!(value_of(node, field), value_of(&row["node"], field), "{field} through nodes");
        }
    }
});

// The orders of a list page, and the page itself, are resolved directly
// into the response when their selection is plain fields
// (`graphql::direct`), the derived way otherwise. The same selection asked
// both ways, by aliases, through fragments (which always go the derived
// way) and beside a field the direct way does not know, gives the same
// answer for every field it serves, for placed, cancelled and shipped
// orders, on `orders` and on a customer's list.
on_both_backends!(a_listed_order_resolves_as_the_derived_type, |app| async {
    let seed = app.seed().await;
    let (a, _) = app.place_order(&seed.customer, &[(&seed.tea, 2), (&seed.cake, 1)]).await;
    let (b, _) = app.place_order(&seed.customer, &[(&seed.cake, 3)]).await;
    app.place_order(&seed.customer, &[(&seed.tea, 1)]).await;
    app.cancel_order(&a, Some("changed my mind")).await;
    app.ship_order(&b).await;
    app.settle().await;
    let plain = "__typename id customerId customerName customerEmail lineCount totalCents status placedAt
        lines { __typename productId sku title quantity unitPriceCents lineTotalCents }";
    let aliased = "__typename i: id customerId n: customerName customerEmail lineCount t: totalCents status placedAt
        l: lines { __typename productId s: sku title quantity unitPriceCents lineTotalCents }";
    let page = |node: &str| {
        format!(
            "__typename edges {{ __typename cursor node {{ {node} }} }} nodes {{ {node} }}
             pageInfo {{ __typename hasNextPage hasPreviousPage startCursor endCursor }}"
        )
    };
    for list in ["orders", "customer"] {
        let ask = |selection: String| {
            let app = &app;
            let customer = seed.customer.clone();
            async move {
                let query = if list == "customer" {
                    format!("query($c: ID!) {{ customer(id: $c) {{ orders(first: 10) {{ {selection} }} }} }}")
                } else {
                    format!(
                        "query($c: ID!) {{ orders(filter: {{customerId: {{eq: $c}}}}, first: 10) {{ {selection} }} }}"
                    )
                };
                let answer = app.data(&query, json!({ "c": customer })).await;
                if list == "customer" {
                    answer["customer"]["orders"].clone()
                } else {
                    answer["orders"].clone()
                }
            }
        };
        let direct = ask(page(plain)).await;
        let nodes: Vec<&Value> = direct["edges"].as_array().expect("edges").iter().map(|e| &e["node"]).collect();
        assert_eq!(nodes.len(), 3, "{list}: {direct}");
        let statuses: Vec<&str> = nodes.iter().map(|n| n["status"].as_str().expect("status")).collect();
        assert_eq!(statuses, ["PLACED", "SHIPPED", "CANCELLED"], "{list}");
        assert_eq!(nodes[2]["lines"].as_array().expect("lines").len(), 2);
        assert_eq!(direct["__typename"], "OrderSummaryConnection");
        assert_eq!(direct["edges"][0]["__typename"], "OrderSummaryEdge");
        assert_eq!(direct["pageInfo"]["endCursor"], direct["edges"][2]["cursor"]);
        let derived_nodes = ask(page(&format!("... on OrderSummary {{ {plain} }}"))).await;
        assert_eq!(direct, derived_nodes, "{list}: orders resolved directly and derived differ");
        let derived =
            ask(format!("... on OrderSummaryConnection {{ {} }}", page(&format!("... on OrderSummary {{ {plain} }}"))))
                .await;
        assert_eq!(direct, derived, "{list}: pages resolved directly and derived differ");
        // Beside fields the direct way leaves to the derived one.
        let mut beside = ask(format!("{} totalCount", page(&format!("{plain} version")))).await;
        assert_eq!(beside["totalCount"], 3, "{list}");
        beside.as_object_mut().expect("page").remove("totalCount");
        for (list_field, inner) in [("edges", "/node"), ("nodes", "")] {
            for item in beside[list_field].as_array_mut().expect("list") {
                let node = item.pointer_mut(inner).expect("node").as_object_mut().expect("object");
                let version = node.remove("version").expect("version");
                assert!(version.as_i64().is_some_and(|v| v >= 1), "{version}");
            }
        }
        assert_eq!(direct, beside, "{list}: a field it does not know changes nothing else");
        let by_alias = ask(page(aliased)).await;
        let by_alias_derived = ask(format!(
            "... on OrderSummaryConnection {{ {} }}",
            page(&format!("... on OrderSummary {{ {aliased} }}"))
        ))
        .await;
        assert_eq!(by_alias, by_alias_derived, "{list}: aliases");
        assert_eq!(by_alias["nodes"][0]["n"], nodes[0]["customerName"]);
        assert_eq!(by_alias["nodes"][0]["l"][0]["s"], nodes[0]["lines"][0]["sku"]);
    }
});
