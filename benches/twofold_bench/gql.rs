//! The GraphQL-over-HTTP client: a reqwest keep-alive pool plus one method
//! per operation the bench sends.
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::workload::{Catalog, OrderSpec};

pub const ORDERS_PAGE: &str =
    "query { orders(status: PLACED, first: 50) { edges { node { id customerName lines { title quantity } } } } }";

const PLACE_ORDER: &str = "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { id token } }";

#[derive(Clone)]
pub struct Gql {
    http: reqwest::Client,
    url: String,
}

impl Gql {
    /// `pool` is how many idle keep-alive connections are kept per host.
    pub fn new(base_url: &str, pool: usize) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(pool)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(20))
            // Only 127.0.0.1 traffic: never route through a proxy from the environment.
            .no_proxy()
            .build()
            .context("build the HTTP client")?;
        Ok(Self { http, url: format!("{base_url}/graphql") })
    }

    /// Sends one operation; returns `data`, or fails on a transport error or
    /// any GraphQL error.
    pub async fn execute(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(&self.url)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .context("POST /graphql")?;
        let status = response.status();
        let body: Value = response.json().await.with_context(|| format!("HTTP {status}: body is not JSON"))?;
        if let Some(errors) = body.get("errors").and_then(Value::as_array).filter(|e| !e.is_empty()) {
            bail!("GraphQL error: {}", errors[0].get("message").and_then(Value::as_str).unwrap_or("?"));
        }
        body.get("data").cloned().ok_or_else(|| anyhow!("HTTP {status}: no data in the response"))
    }

    pub async fn register_customer(&self, name: &str, email: &str) -> anyhow::Result<Uuid> {
        let data = self
            .execute(
                "mutation($input: RegisterCustomerInput!) { registerCustomer(input: $input) { id token } }",
                json!({ "input": { "name": name, "email": email } }),
            )
            .await?;
        parse_id(&data["registerCustomer"]["id"])
    }

    pub async fn add_product(&self, sku: &str, title: &str, price_cents: i64) -> anyhow::Result<Uuid> {
        let data = self
            .execute(
                "mutation($input: AddProductInput!) { addProduct(input: $input) { id token } }",
                json!({ "input": { "sku": sku, "title": title, "priceCents": price_cents } }),
            )
            .await?;
        parse_id(&data["addProduct"]["id"])
    }

    /// Places the order; returns its write token.
    pub async fn place_order(&self, catalog: &Catalog, order: &OrderSpec) -> anyhow::Result<String> {
        let data = self.execute(PLACE_ORDER, json!({ "input": catalog.place_order_input(order) })).await?;
        token_of(&data["placeOrder"])
    }

    pub async fn cancel_order(&self, order_id: Uuid) -> anyhow::Result<String> {
        let data = self
            .execute(
                "mutation($input: CancelOrderInput!) { cancelOrder(input: $input) { token } }",
                json!({ "input": { "orderId": order_id, "reason": "bench" } }),
            )
            .await?;
        token_of(&data["cancelOrder"])
    }

    pub async fn ship_order(&self, order_id: Uuid) -> anyhow::Result<String> {
        let data = self
            .execute(
                "mutation($input: ShipOrderInput!) { shipOrder(input: $input) { token } }",
                json!({ "input": { "orderId": order_id, "carrier": "DHL", "trackingNumber": format!("1Z{}", order_id.simple()) } }),
            )
            .await?;
        token_of(&data["shipOrder"])
    }

    /// The page the read payoff is about; returns how many orders it held.
    /// The loops' hot call: it checks the answer (HTTP 200, no GraphQL
    /// error, `data.orders.edges` a list) without building it, so the load
    /// generator's own CPU on these two cores stays small beside the
    /// server's. [`Self::execute`] would build every answer as a
    /// `serde_json::Value` tree and clone its `data`.
    pub async fn orders_page(&self) -> anyhow::Result<usize> {
        #[derive(serde::Deserialize)]
        struct Answer {
            data: Option<Data>,
            #[serde(default)]
            errors: Vec<Error>,
        }
        #[derive(serde::Deserialize)]
        struct Data {
            orders: Orders,
        }
        #[derive(serde::Deserialize)]
        struct Orders {
            edges: Vec<serde::de::IgnoredAny>,
        }
        #[derive(serde::Deserialize)]
        struct Error {
            message: String,
        }
        static BODY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let body = BODY.get_or_init(|| json!({ "query": ORDERS_PAGE, "variables": {} }).to_string());
        let response = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.as_str())
            .send()
            .await
            .context("POST /graphql")?;
        let status = response.status();
        let bytes = response.bytes().await.context("read the body")?;
        let answer: Answer =
            serde_json::from_slice(&bytes).with_context(|| format!("HTTP {status}: not a page of orders"))?;
        if let Some(error) = answer.errors.first() {
            bail!("GraphQL error: {}", error.message);
        }
        match answer.data {
            Some(data) if status.is_success() => Ok(data.orders.edges.len()),
            _ => bail!("HTTP {status}: no data in the response"),
        }
    }

    /// Events committed but not yet applied, summed over every projection,
    /// plus the first projection error if one is stuck.
    pub async fn projection_lag(&self) -> anyhow::Result<(i64, Option<String>)> {
        let data = self.execute("query { projections { name status lag lastError } }", json!({})).await?;
        let projections = data["projections"].as_array().ok_or_else(|| anyhow!("no projections in the answer"))?;
        let lag = projections.iter().filter_map(|p| p["lag"].as_str().and_then(|s| s.parse::<i64>().ok())).sum();
        let error = projections
            .iter()
            .find_map(|p| p["lastError"].as_str().map(|e| format!("{}: {e}", p["name"].as_str().unwrap_or("?"))));
        Ok((lag, error))
    }
}

fn parse_id(value: &Value) -> anyhow::Result<Uuid> {
    let text = value.as_str().ok_or_else(|| anyhow!("no id in the answer"))?;
    Uuid::parse_str(text).with_context(|| format!("id '{text}' is not a UUID"))
}

fn token_of(value: &Value) -> anyhow::Result<String> {
    value["token"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no token in the answer"))
}
