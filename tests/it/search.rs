//! Search, filters, sorts, counts and relations (issue 35), on both stores:
//! one corpus and one list of expected answers, so both stores give the
//! same result sets by construction; hostile input; read-your-writes on a
//! search; `EXPLAIN` on every offered combination; the statement count of
//! `Customer.orders` under a list; a database made by the previous release.
use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;

/// A small corpus: three customers (one with a name that needs folding),
/// three products, five orders, one shipped with a tracking number, one
/// cancelled. Returns the order ids by a short name.
struct Corpus {
    ada: String,
    zoe: String,
    grace: String,
    tea: String,
    earl: String,
    cake: String,
    /// Ada: green tea.
    ada_tea: String,
    /// Ada: lemon cake, cancelled.
    ada_cake: String,
    /// Zoë: earl grey tea and cake, shipped with tracking number 1Z999AA1.
    zoe_mixed: String,
    /// Grace: green tea ×3.
    grace_tea: String,
    /// Grace: earl grey.
    grace_earl: String,
    /// The token of the last command.
    token: String,
}

async fn corpus(app: &TestApp) -> Corpus {
    let tag = short();
    let (ada, _) = app.register_customer("Ada Lovelace", &format!("ada.{tag}@example.com")).await;
    let (zoe, _) = app.register_customer("Zoë Øster", &format!("zoe.{tag}@example.org")).await;
    let (grace, _) = app.register_customer("Grace Hopper", &format!("grace.{tag}@navy.example")).await;
    let (tea, _) = app.add_product(&format!("TEA-{tag}"), "Green tea", 450).await;
    let (earl, _) = app.add_product(&format!("EARL-{tag}"), "Earl Grey tea", 520).await;
    let (cake, _) = app.add_product(&format!("CAKE-{tag}"), "Lemon cake", 1200).await;
    let (ada_tea, _) = app.place_order(&ada, &[(&tea, 1)]).await;
    let (ada_cake, _) = app.place_order(&ada, &[(&cake, 1)]).await;
    let (zoe_mixed, _) = app.place_order(&zoe, &[(&earl, 2), (&cake, 1)]).await;
    let (grace_tea, _) = app.place_order(&grace, &[(&tea, 3)]).await;
    let (grace_earl, _) = app.place_order(&grace, &[(&earl, 1)]).await;
    let shipped = app
        .data(
            "mutation($id: ID!) { shipOrder(input: {orderId: $id, carrier: \"UPS\", trackingNumber: \"1Z999AA1\"}) { token } }",
            json!({ "id": zoe_mixed }),
        )
        .await;
    let cancelled = app.cancel_order(&ada_cake, Some("changed my mind")).await;
    assert!(cancelled.get("errors").is_none(), "{cancelled}");
    let token = s(&cancelled["data"]["cancelOrder"]["token"]);
    assert!(shipped["shipOrder"]["token"].is_string());
    Corpus { ada, zoe, grace, tea, earl, cake, ada_tea, ada_cake, zoe_mixed, grace_tea, grace_earl, token }
}

/// The ids an `orders` search finds (every page), and its totalCount.
async fn search_orders(app: &TestApp, search: &str, token: &str) -> (BTreeSet<String>, i64) {
    let answer = app
        .gql(
            "query($s: String, $t: Token) { orders(search: $s, first: 100, consistentWith: $t) { totalCount nodes { id searchRank } } }",
            json!({ "s": search, "t": token }),
        )
        .await;
    assert!(answer.get("errors").is_none(), "{search:?}: {answer}");
    let nodes = answer["data"]["orders"]["nodes"].as_array().expect("nodes").clone();
    let ranks: Vec<f64> = nodes.iter().map(|n| n["searchRank"].as_f64().expect("a search ranks")).collect();
    assert!(ranks.windows(2).all(|w| w[0] >= w[1]), "best first: {ranks:?}");
    let total = answer["data"]["orders"]["totalCount"].as_i64().expect("totalCount");
    (nodes.iter().map(|n| s(&n["id"])).collect(), total)
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).clone()).collect()
}

on_both_backends!(the_search_language_finds_the_same_orders_on_both_stores, |app| async {
    let c = corpus(&app).await;
    let all = set(&[&c.ada_tea, &c.ada_cake, &c.zoe_mixed, &c.grace_tea, &c.grace_earl]);
    let cases: Vec<(&str, BTreeSet<String>)> = vec![
        // A name, two words ANDed across fields (name and product title).
        ("ada", set(&[&c.ada_tea, &c.ada_cake])),
        ("ada tea", set(&[&c.ada_tea])),
        ("lovelace green", set(&[&c.ada_tea])),
        // A phrase: the words next to each other.
        ("\"earl grey\"", set(&[&c.zoe_mixed, &c.grace_earl])),
        ("\"grey earl\"", set(&[])),
        // Exclusion.
        ("tea -earl", set(&[&c.ada_tea, &c.grace_tea])),
        ("tea -\"earl grey\" ", set(&[&c.ada_tea, &c.grace_tea])),
        // The last word typed is a prefix; a trailing space ends it; `*` makes one anywhere.
        ("lov", set(&[&c.ada_tea, &c.ada_cake])),
        ("lov ", set(&[])),
        ("hop* tea ", set(&[&c.grace_tea, &c.grace_earl])),
        // Folding: accents and letters like Ø on either side.
        ("zoe oster", set(&[&c.zoe_mixed])),
        ("ZOË ØSTER", set(&[&c.zoe_mixed])),
        // Email, SKU, tracking number, order id.
        ("example org", set(&[&c.zoe_mixed])),
        ("1z999aa1", set(&[&c.zoe_mixed])),
        (c.grace_tea.as_str(), set(&[&c.grace_tea])),
        ("cake", set(&[&c.ada_cake, &c.zoe_mixed])),
        ("example", all.clone()),
    ];
    for (query, expected) in cases {
        let (found, total) = search_orders(&app, query, &c.token).await;
        assert_eq!(found, expected, "search {query:?}");
        assert_eq!(total, expected.len() as i64, "totalCount of {query:?}");
    }
    // SKUs: the words of `TEA-<tag>`.
    let products = app
        .data("query($s: String) { products(search: $s) { totalCount nodes { id } } }", json!({ "s": "earl grey" }))
        .await;
    assert_eq!(products["products"]["nodes"][0]["id"], json!(c.earl));
    let customers =
        app.data("query($s: String) { customers(search: $s) { nodes { id name } } }", json!({ "s": "zoe" })).await;
    assert_eq!(customers["customers"]["nodes"].as_array().map(Vec::len), Some(1));
    assert_eq!(customers["customers"]["nodes"][0]["id"], json!(c.zoe));
    let _ = (&c.ada, &c.grace, &c.tea, &c.cake);
});

on_both_backends!(hostile_search_input_gives_results_or_a_validation_error, |app| async {
    let c = corpus(&app).await;
    let long = "a".repeat(10_000);
    let inputs = [
        "\"",
        "'",
        "*",
        "**",
        "NEAR(ada tea)",
        "ada OR tea",
        "-",
        "--tea",
        "-\"\"",
        "\0",
        "ada\0tea",
        "🙂",
        "☕ tea",
        "\\",
        ":*",
        "& | ! ( )",
        "ada:*",
        "'ada' & 'tea'",
        "\"unclosed phrase",
        "tea*\"",
        long.as_str(),
        "a b c d e f g h",
        "a b c d e f g h i",
    ];
    for input in inputs {
        let answer = app
            .gql(
                "query($s: String, $t: Token) { orders(search: $s, consistentWith: $t) { nodes { id } } customers(search: $s) { nodes { id } } products(search: $s) { nodes { id } } }",
                json!({ "s": input, "t": c.token }),
            )
            .await;
        match answer.get("errors") {
            None => {}
            Some(errors) => {
                for e in errors.as_array().expect("errors") {
                    assert_eq!(e["extensions"]["code"], "VALIDATION", "{input:?}: {answer}");
                    let message = e["message"].as_str().expect("message");
                    // (A NUL is refused before any field runs, as in every string.)
                    assert!(message.contains("search") || message.contains("NUL"), "{input:?}: {message}");
                    assert!(!message.contains('\n'), "one line: {message}");
                }
            }
        }
    }
    // Named cases.
    let too_long = app.gql("query($s: String) { products(search: $s) { nodes { id } } }", json!({ "s": long })).await;
    assert_eq!(code(&too_long), "VALIDATION");
    let only_not = app.gql("{ products(search: \"-tea\") { nodes { id } } }", json!({})).await;
    assert_eq!(code(&only_not), "VALIDATION");
    let ors = search_orders(&app, "ada OR tea", &c.token).await.0;
    assert!(ors.is_empty(), "OR is a word, not an operator: {ors:?}");
});

on_both_backends!(a_search_with_a_writes_token_finds_the_write, |app| async {
    let seed = app.seed().await;
    for i in 0..5 {
        let (customer, _) = app.register_customer(&format!("Marie Curie {i}"), &format!("marie{i}@example.com")).await;
        let (order, token) = app.place_order(&customer, &[(&seed.tea, 1)]).await;
        // At once, with the token: the write is there.
        let (found, _) = search_orders(&app, &format!("marie{i}"), &token).await;
        assert_eq!(found, set(&[&order]), "round {i}");
    }
});

on_both_backends!(pages_of_a_search_and_of_each_sort_are_stable_and_complete, |app| async {
    let c = corpus(&app).await;
    for (args, variables) in [
        ("search: \"example\"", json!({})),
        ("orderBy: [{field: PLACED_AT, direction: DESC}]", json!({})),
        ("orderBy: [{field: PLACED_AT, direction: ASC}]", json!({})),
        ("orderBy: [{field: TOTAL_CENTS, direction: DESC}]", json!({})),
        ("orderBy: [{field: TOTAL_CENTS, direction: ASC}], filter: {totalCents: {gte: 500}}", json!({})),
        ("search: \"tea\", orderBy: [{field: TOTAL_CENTS}]", json!({})),
    ] {
        let query = format!(
            "query($after: String, $t: Token) {{ orders({args}, first: 2, after: $after, consistentWith: $t) {{ totalCount pageInfo {{ hasNextPage endCursor }} nodes {{ id totalCents placedAt }} }} }}"
        );
        let mut seen: Vec<String> = Vec::new();
        let mut after = Value::Null;
        let mut total = None;
        for _ in 0..10 {
            let mut vars = variables.clone();
            vars["after"] = after.clone();
            vars["t"] = json!(c.token);
            let page = app.data(&query, vars).await["orders"].clone();
            total.get_or_insert(page["totalCount"].as_i64().expect("totalCount"));
            seen.extend(page["nodes"].as_array().expect("nodes").iter().map(|n| s(&n["id"])));
            if page["pageInfo"]["hasNextPage"] != true {
                break;
            }
            after = page["pageInfo"]["endCursor"].clone();
        }
        let unique: BTreeSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "{args}: no row twice: {seen:?}");
        assert_eq!(Some(seen.len() as i64), total, "{args}: every row once");
    }
    // Sorted by total, descending: each page continues where the last ended.
    let all =
        app.data("{ orders(orderBy: [{field: TOTAL_CENTS}], first: 100) { nodes { totalCents } } }", json!({})).await;
    let totals: Vec<i64> = all["orders"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["totalCents"].as_i64().expect("int"))
        .collect();
    assert!(totals.windows(2).all(|w| w[0] >= w[1]), "{totals:?}");
    // A cursor of another ordering is refused.
    let page = app.data("{ orders(first: 1) { pageInfo { endCursor } } }", json!({})).await;
    let cursor = page["orders"]["pageInfo"]["endCursor"].clone();
    let refused = app
        .gql(
            "query($a: String) { orders(orderBy: [{field: TOTAL_CENTS}], after: $a) { nodes { id } } }",
            json!({ "a": cursor }),
        )
        .await;
    assert_eq!(code(&refused), "VALIDATION", "{refused}");
});

on_both_backends!(filters_narrow_lists_exactly_and_unserved_ones_are_refused, |app| async {
    let c = corpus(&app).await;
    let ids = |data: &Value, list: &str| -> BTreeSet<String> {
        data[list]["nodes"].as_array().expect("nodes").iter().map(|n| s(&n["id"])).collect()
    };
    let q = |filter: &str| {
        format!("query($t: Token) {{ orders(filter: {filter}, first: 100, consistentWith: $t) {{ totalCount nodes {{ id }} }} }}")
    };
    let t = json!({ "t": c.token });
    let shipped_or_cancelled = app.data(&q("{status: {in: [SHIPPED, CANCELLED]}}"), t.clone()).await;
    assert_eq!(ids(&shipped_or_cancelled, "orders"), set(&[&c.zoe_mixed, &c.ada_cake]));
    assert_eq!(shipped_or_cancelled["orders"]["totalCount"], 2);
    let placed = app.data(&q("{status: {eq: PLACED}}"), t.clone()).await;
    assert_eq!(ids(&placed, "orders"), set(&[&c.ada_tea, &c.grace_tea, &c.grace_earl]));
    let far_future = app.data(&q("{placedAt: {gte: \"2999-01-01T00:00:00Z\"}}"), t.clone()).await;
    assert_eq!(far_future["orders"]["totalCount"], 0);
    let since_2000 = app.data(&q("{placedAt: {gte: \"2000-01-01T00:00:00Z\"}, status: {eq: PLACED}}"), t.clone()).await;
    assert_eq!(since_2000["orders"]["totalCount"], 3);
    // totalCents with its own sort; and with one customer, anything.
    let big = app
        .data(
            "query($t: Token) { orders(filter: {totalCents: {gt: 1300}}, orderBy: [{field: TOTAL_CENTS}], consistentWith: $t) { totalCount nodes { id } } }",
            t.clone(),
        )
        .await;
    assert_eq!(ids(&big, "orders"), set(&[&c.grace_tea, &c.zoe_mixed]));
    let grace_small = app
        .data(
            "query($c: ID!, $t: Token) { orders(filter: {customerId: {eq: $c}, totalCents: {lt: 1000}}, consistentWith: $t) { nodes { id } } }",
            json!({ "c": c.grace, "t": c.token }),
        )
        .await;
    assert_eq!(ids(&grace_small, "orders"), set(&[&c.grace_earl]));
    // No index serves totalCents with the default (PLACED_AT) sort: refused, naming what is offered.
    let refused = app.gql("{ orders(filter: {totalCents: {gt: 1}}) { nodes { id } } }", json!({})).await;
    assert_eq!(code(&refused), "VALIDATION", "{refused}");
    let message = refused["errors"][0]["message"].as_str().expect("message");
    assert!(
        message.contains("totalCents") && message.contains("TOTAL_CENTS") && message.contains("search"),
        "{message}"
    );
    // Customers and products: each sort with its own filter.
    let customers = app
        .data(
            "query($t: Token) { customers(filter: {ordersPlaced: {gte: \"2\"}}, orderBy: [{field: ORDERS_PLACED}], consistentWith: $t) { totalCount nodes { id } } }",
            t.clone(),
        )
        .await;
    assert_eq!(ids(&customers, "customers"), set(&[&c.ada, &c.grace]));
    let refused = app.gql("{ customers(filter: {ordersPlaced: {gte: \"2\"}}) { nodes { id } } }", json!({})).await;
    assert_eq!(code(&refused), "VALIDATION", "{refused}");
    let products = app
        .data(
            "query($t: Token) { products(filter: {priceCents: {lt: 600}}, orderBy: [{field: PRICE, direction: ASC}], consistentWith: $t) { nodes { id } } }",
            t.clone(),
        )
        .await;
    let listed: Vec<String> =
        products["products"]["nodes"].as_array().expect("nodes").iter().map(|n| s(&n["id"])).collect();
    assert_eq!(listed, vec![c.tea.clone(), c.earl.clone()]);
    // product(id:).
    let one = app.data("query($id: ID!) { product(id: $id) { title } }", json!({ "id": c.cake })).await;
    assert_eq!(one["product"]["title"], "Lemon cake");
    let orders =
        app.gql("{ orders(orderBy: [{field: PLACED_AT}, {field: TOTAL_CENTS}]) { nodes { id } } }", json!({})).await;
    assert_eq!(code(&orders), "VALIDATION");
});

on_both_backends!(customer_orders_are_read_in_one_statement_for_a_page_of_customers, |app| async {
    let seed = app.seed().await;
    for i in 0..6 {
        let (customer, _) = app.register_customer(&format!("Buyer {i}"), &format!("buyer{i}@example.com")).await;
        for _ in 0..(i % 3) + 1 {
            app.place_order(&customer, &[(&seed.tea, 1)]).await;
        }
    }
    app.settle().await;
    let query = "query($n: Int) { customers(first: $n) { nodes { id orders(first: 2) { totalCount pageInfo { hasNextPage } nodes { id totalCents customer { name } } } } } }";
    let mut costs = Vec::new();
    for n in [2, 7] {
        // The count is the read model's, which background reads (the
        // durable checkpoint read) also move: the fewest of three runs is
        // this query's own.
        let mut data = Value::Null;
        let mut fewest = u64::MAX;
        for _ in 0..3 {
            let before = app.services.reads.statement_count();
            data = app.data(query, json!({ "n": n })).await;
            fewest = fewest.min(app.services.reads.statement_count() - before);
        }
        costs.push(fewest);
        let nodes = data["customers"]["nodes"].as_array().expect("nodes");
        assert_eq!(nodes.len(), n as usize);
        for node in nodes {
            let orders = &node["orders"];
            let count = orders["totalCount"].as_i64().expect("count");
            let listed = orders["nodes"].as_array().expect("orders").len() as i64;
            assert_eq!(listed, count.min(2));
            assert_eq!(orders["pageInfo"]["hasNextPage"], count > 2);
        }
    }
    assert_eq!(costs[0], costs[1], "statements do not grow with the customers listed: {costs:?}");
    assert!(costs[1] <= 4, "customers, their orders, their counts, the orders' customers: {costs:?}");
});

/// Every combination the lists offer, with the plan each store makes for
/// it: none may read a view from end to end (PostgreSQL with sequential
/// scans priced out, so a plan that keeps one has no index to use).
mod plans {
    use super::*;
    use twofold::query::customers::CUSTOMERS;
    use twofold::query::list::{Condition, Direction, Filter, ListQuery, Order, Range, ViewSpec};
    use twofold::query::orders::ORDERS;
    use twofold::query::products::PRODUCTS;

    /// A filter by the API name it has.
    fn filter(name: &'static str) -> Filter {
        let column = match name {
            "status" => {
                return Filter {
                    name,
                    conditions: vec![Condition::In {
                        column: "status",
                        values: vec!["placed".into(), "shipped".into()],
                    }],
                }
            }
            "placedAt" => "placed_at",
            "totalCents" => "total_cents",
            "lifetimeValueCents" => "lifetime_value_cents",
            "ordersPlaced" => "orders_placed",
            "priceCents" => "price_cents",
            "unitsSold" => "units_sold",
            other => panic!("no filter {other}"),
        };
        if name == "placedAt" {
            let since = chrono::Utc::now() - chrono::Duration::days(1);
            return Filter::range(name, column, &Range { gte: Some(since), ..Default::default() }).expect("filter");
        }
        Filter::range(name, column, &Range { gte: Some(1i64), lt: Some(1_000_000i64), ..Default::default() })
            .expect("filter")
    }

    /// Every list the API accepts on `view`: each sort in both directions
    /// with each subset of the filters it serves, and a search with each.
    pub fn offered(view: &'static ViewSpec) -> Vec<ListQuery> {
        let mut lists = Vec::new();
        for sort in view.sorts {
            for direction in [Direction::Asc, Direction::Desc] {
                let subsets = 1usize << sort.serves.len();
                for mask in 0..subsets {
                    let mut list = ListQuery::new(view, 20).order_by(sort.name, direction).expect("sort");
                    for (i, name) in sort.serves.iter().enumerate() {
                        if mask & (1 << i) != 0 {
                            list.filters.push(filter(name));
                        }
                    }
                    list.check().expect("offered");
                    lists.push(list.clone());
                    let searched = list.search(Some("ada t"), true).expect("search");
                    lists.push(searched);
                }
            }
        }
        let relevance = ListQuery::new(view, 20).search(Some("ada t"), false).expect("search");
        assert_eq!(relevance.order, Order::Relevance);
        lists.push(relevance);
        lists
    }

    /// Thousands of rows in each view, written straight into the views (as
    /// the projections would leave them: a later row placed later, as the
    /// log's order has it), and fresh statistics: the
    /// planner then chooses as it would on a real database, so a plan that
    /// keeps a scan of a whole view has no index to serve it.
    async fn fill(app: &TestApp) {
        use sea_orm::ConnectionTrait;
        let rows = 20_000;
        let statements: Vec<String> = if app.backend == Backend::Postgres {
            vec![
                format!("INSERT INTO order_summary (order_id, customer_id, customer_name, customer_email, customer_version, lines, line_count, total_cents, status, placed_at, placed_position, version, last_tx_id, last_position, channel, search_name, search_text) \
                 SELECT gen_random_uuid(), gen_random_uuid(), 'Name ' || i, 'n' || i || '@example.com', 1, '[]', 1, i * 10, (ARRAY['placed','shipped','cancelled'])[1 + i % 3], now() - ({rows} - i) * interval '1 minute', 1000000 + i, 1, 0, 1000000 + i, 'WEB', 'name ' || i, 'n' || i || ' example com w' || (i % 50) \
                 FROM generate_series(1, {rows}) i"),
                format!("INSERT INTO customer_view (customer_id, name, email, registered_at, registered_position, orders_placed, orders_open, orders_cancelled, orders_shipped, lifetime_value_cents, version, last_tx_id, last_position, search_name, search_text) \
                 SELECT gen_random_uuid(), 'Name ' || i, 'n' || i || '@example.com', now(), 1000000 + i, i % 20, 0, 0, 0, i * 100, 1, 0, 1000000 + i, 'name ' || i, 'n' || i || ' example com' \
                 FROM generate_series(1, {rows}) i"),
                format!("INSERT INTO product_catalog (product_id, sku, title, price_cents, units_sold, revenue_cents, added_at, added_position, version, last_tx_id, last_position, search_name, search_text) \
                 SELECT gen_random_uuid(), 'SKU-' || i, 'Thing ' || i, i * 7, i % 40, i * 70, now(), 1000000 + i, 1, 0, 1000000 + i, 'thing ' || i, 'sku ' || i \
                 FROM generate_series(1, {rows}) i"),
                // (VACUUM also moves the GIN indexes' pending entries into
                // the index, as autovacuum does on a live database.)
                "VACUUM ANALYZE order_summary".to_owned(),
                "VACUUM ANALYZE customer_view".to_owned(),
                "VACUUM ANALYZE product_catalog".to_owned(),
            ]
        } else {
            let seq = format!("WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {rows})");
            // (Times written as the service writes them, RFC 3339, so that a
            // cursor, which binds one, compares with them as text.)
            vec![
                format!("{seq} INSERT INTO order_summary (order_id, customer_id, customer_name, customer_email, customer_version, lines, line_count, total_cents, status, placed_at, placed_position, version, last_tx_id, last_position, channel, search_name, search_text) \
                 SELECT randomblob(16), randomblob(16), 'Name ' || i, 'n' || i || '@example.com', 1, '[]', 1, i * 10, CASE i % 3 WHEN 0 THEN 'placed' WHEN 1 THEN 'shipped' ELSE 'cancelled' END, strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-' || ({rows} - i) || ' minutes'), 1000000 + i, 1, 0, 1000000 + i, 'WEB', 'name ' || i, 'n' || i || ' example com w' || (i % 50) FROM seq"),
                format!("{seq} INSERT INTO customer_view (customer_id, name, email, registered_at, registered_position, orders_placed, orders_open, orders_cancelled, orders_shipped, lifetime_value_cents, version, last_tx_id, last_position, search_name, search_text) \
                 SELECT randomblob(16), 'Name ' || i, 'n' || i || '@example.com', datetime('now'), 1000000 + i, i % 20, 0, 0, 0, i * 100, 1, 0, 1000000 + i, 'name ' || i, 'n' || i || ' example com' FROM seq"),
                format!("{seq} INSERT INTO product_catalog (product_id, sku, title, price_cents, units_sold, revenue_cents, added_at, added_position, version, last_tx_id, last_position, search_name, search_text) \
                 SELECT randomblob(16), 'SKU-' || i, 'Thing ' || i, i * 7, i % 40, i * 70, datetime('now'), 1000000 + i, 1, 0, 1000000 + i, 'thing ' || i, 'sku ' || i FROM seq"),
                "ANALYZE".to_owned(),
            ]
        };
        for statement in statements {
            app.db.execute_unprepared(&statement).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
    }

    async fn plan_of(app: &TestApp, list: &ListQuery) -> String {
        use sea_orm::{ConnectionTrait, Statement};
        let backend = app.db.get_database_backend();
        let mut columns = vec![list.view.key, list.view.default_sort.column];
        if let Order::By(sort, _) = list.order {
            columns.push(sort.column);
        }
        columns.dedup();
        let select = columns.join(", ");
        let mut plans = Vec::new();
        for statement in list.possible_page_statements(backend, &select) {
            let explain = match backend {
                sea_orm::DbBackend::Postgres => format!("EXPLAIN {}", statement.sql),
                _ => format!("EXPLAIN QUERY PLAN {}", statement.sql),
            };
            let rows = app
                .db
                .query_all_raw(Statement::from_sql_and_values(
                    backend,
                    explain,
                    statement.values.map(|v| v.0).unwrap_or_default(),
                ))
                .await
                .expect("explain");
            plans.extend(rows.iter().map(|r| match backend {
                sea_orm::DbBackend::Postgres => r.try_get::<String>("", "QUERY PLAN").expect("plan"),
                _ => r.try_get::<String>("", "detail").expect("detail"),
            }));
        }
        plans.join("\n")
    }

    /// Whether `plan` reads `table` from end to end.
    fn scans_whole(plan: &str, table: &str, postgres: bool) -> bool {
        plan.lines().any(|line| {
            if postgres {
                line.contains(&format!("Seq Scan on {table}"))
            } else {
                // `SCAN order_summary` (or its alias `t`), not an index walk
                // (`SCAN t USING INDEX …`) nor the FTS table.
                let words: Vec<&str> = line.split_whitespace().collect();
                words.first() == Some(&"SCAN")
                    && matches!(words.get(1), Some(w) if *w == table || *w == "t")
                    && !line.contains("USING")
            }
        })
    }

    on_both_backends!(no_offered_list_reads_a_view_from_end_to_end, |app| async {
        fill(&app).await;
        let postgres = app.backend == Backend::Postgres;
        let mut checked = 0;
        for view in [&ORDERS, &CUSTOMERS, &PRODUCTS] {
            for list in offered(view) {
                let plan = plan_of(&app, &list).await;
                assert!(!scans_whole(&plan, view.table, postgres), "{} {:?}:\n{plan}", view.list, list);
                checked += 1;
            }
        }
        assert!(checked > 40, "{checked} combinations");
        // And the check can fail: a sort no index serves (one the API does
        // not offer) reads the whole view.
        assert!(ListQuery::new(&ORDERS, 20).order_by("LINE_COUNT", Direction::Desc).is_err(), "not offered");
        let mut unserved = ListQuery::new(&ORDERS, 20);
        let line_count =
            twofold::query::list::SortSpec { name: "LINE_COUNT", column: "line_count", time: false, serves: &[] };
        unserved.order = Order::By(line_count, Direction::Desc);
        let plan = plan_of(&app, &unserved).await;
        assert!(scans_whole(&plan, "order_summary", postgres), "no index serves this sort:\n{plan}");
        let _ = Condition::eq("status", "placed");
    });

    // A search that matches most of a view (more than SQLite's 5,000,
    // so it walks the sort's index against the matches read once, and a
    // prefix and an exclusion, so PostgreSQL asks its index for the exact
    // word only) lists exactly the rows a plain scan of the text finds,
    // in order, page after page; by relevance, best first.
    on_both_backends!(a_search_matching_most_rows_lists_exactly_its_matches, |app| async {
        use sea_orm::{ConnectionTrait, Statement};
        fill(&app).await;
        let backend = app.db.get_database_backend();
        // Rows whose text is "… example com wN" without w7, newest first.
        let expected_sql = "SELECT placed_at FROM order_summary WHERE search_text LIKE '%example com w%' \
                            AND search_text NOT LIKE '% w7' ORDER BY placed_at DESC, order_id DESC LIMIT 30";
        let expected: Vec<i64> = app
            .db
            .query_all_raw(Statement::from_string(backend, expected_sql))
            .await
            .expect("expected rows")
            .iter()
            .map(|r| r.try_get::<chrono::DateTime<chrono::Utc>>("", "placed_at").expect("placed_at").timestamp())
            .collect();
        assert_eq!(expected.len(), 30);
        let placed = |answer: &serde_json::Value| -> Vec<i64> {
            assert!(answer.get("errors").is_none(), "{answer}");
            answer["data"]["orders"]["nodes"]
                .as_array()
                .expect("nodes")
                .iter()
                .map(|n| {
                    chrono::DateTime::parse_from_rfc3339(n["placedAt"].as_str().expect("placedAt"))
                        .expect("a time")
                        .timestamp()
                })
                .collect()
        };
        // In the view's order, two pages through the cursor.
        let query = "query($after: String) { orders(search: \"example com* -w7 \", first: 15, after: $after, orderBy: [{field: PLACED_AT}]) \
                     { nodes { placedAt } pageInfo { endCursor } } }";
        let first = app.gql(query, json!({ "after": null })).await;
        let cursor = first["data"]["orders"]["pageInfo"]["endCursor"].clone();
        let second = app.gql(query, json!({ "after": cursor })).await;
        let listed: Vec<i64> = placed(&first).into_iter().chain(placed(&second)).collect();
        assert_eq!(listed, expected, "exactly the matches, newest first");
        // By relevance: a full page, best first.
        let ranked = app
            .gql("{ orders(search: \"example com*\", first: 50) { nodes { placedAt searchRank } } }", json!({}))
            .await;
        let nodes = ranked["data"]["orders"]["nodes"].as_array().expect("nodes").clone();
        assert_eq!(nodes.len(), 50, "{ranked}");
        let ranks: Vec<f64> = nodes.iter().map(|n| n["searchRank"].as_f64().expect("a rank")).collect();
        assert!(ranks.windows(2).all(|w| w[0] >= w[1]), "best first: {ranks:?}");
        // Ranked among the newest SEARCH_WINDOW matches only (SQLite reads
        // that window from FTS5 by rowid, the order the view received its
        // rows; PostgreSQL by placedAt): never an older one.
        let window_sql = format!(
            "SELECT placed_at FROM order_summary WHERE search_text LIKE '%example com%' \
             ORDER BY placed_at DESC, order_id DESC LIMIT 1 OFFSET {}",
            twofold::query::list::SEARCH_WINDOW - 1
        );
        let oldest_in_window = app
            .db
            .query_one_raw(Statement::from_string(backend, window_sql))
            .await
            .expect("the window's oldest")
            .expect("a row")
            .try_get::<chrono::DateTime<chrono::Utc>>("", "placed_at")
            .expect("placed_at")
            .timestamp();
        let ranked_placed = placed(&ranked);
        assert!(ranked_placed.iter().all(|p| *p >= oldest_in_window), "{ranked_placed:?} vs {oldest_in_window}");
    });
}

/// A database made by the previous release, holding orders: made here by
/// this release and then taken back down to before the search migrations
/// (their `down`, and those of every later migration), which leaves exactly
/// the previous schema with real rows. This release migrates it up again,
/// backfills the search words from the views, and finds the old orders.
mod upgrade {
    use super::*;
    use migration::MigratorTrait;

    async fn old_orders_are_found_after_the_upgrade(backend: Backend) {
        let Some(database) = TestDatabase::create(backend).await else { return };
        let settings = twofold::settings::Settings::for_database(&database.url);
        let app = TestApp::start(database, settings.clone()).await;
        let c = corpus(&app).await;
        app.settle().await;
        let database = app.into_database().await;
        let db = sea_orm::Database::connect(&database.url).await.expect("connect");
        // Every migration from the first search one on (later releases'
        // migrations come down first, as they would not exist yet).
        let migrations = migration::Migrator::migrations();
        let first_search = migrations
            .iter()
            .position(|m| m.name().contains("search_documents"))
            .expect("the search migration is listed");
        let steps = u32::try_from(migrations.len() - first_search).expect("a few migrations");
        migration::Migrator::down(&db, Some(steps)).await.expect("down to the previous release");
        if backend == Backend::Postgres {
            use sea_orm::ConnectionTrait;
            let columns = db
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    "SELECT count(*) AS n FROM information_schema.columns WHERE column_name = 'search_text'",
                ))
                .await
                .expect("columns")
                .map(|r| r.try_get::<i64>("", "n").expect("n"));
            assert_eq!(columns, Some(0), "the previous schema has no search columns");
        }
        db.close().await.ok();
        let again = TestApp::start(database, settings).await;
        let mut backfilled = again.services.search_backfilled.subscribe();
        tokio::time::timeout(std::time::Duration::from_secs(60), backfilled.wait_for(|done| *done))
            .await
            .expect("the backfill finishes")
            .expect("the backfill reports");
        let (found, _) = search_orders(&again, "ada", &c.token).await;
        assert_eq!(found, set(&[&c.ada_tea, &c.ada_cake]));
        let (found, _) = search_orders(&again, "1z999aa1", &c.token).await;
        assert_eq!(found, set(&[&c.zoe_mixed]));
        again.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn old_orders_are_found_after_the_upgrade_on_sqlite() {
        old_orders_are_found_after_the_upgrade(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn old_orders_are_found_after_the_upgrade_on_postgres() {
        old_orders_are_found_after_the_upgrade(Backend::Postgres).await;
    }
}
