"""Seeds the demo data the browser tests use, through GraphQL mutations only
(run by run.sh for the open server; the keyed server's fixture calls seed()
with a staff token)."""
from twofold_server import Server

CUSTOMERS = [
    ("Ada Lovelace", "ada@example.com"),
    ("Grace Hopper", "grace@example.com"),
    ("Alan Turing", "alan@example.com"),
    ("Katherine Johnson", "katherine@example.com"),
    ("Edsger Dijkstra", "edsger@example.com"),
]
PRODUCTS = [
    ("TEA-GREEN", "Green tea", 450),
    ("TEA-BLACK", "Black tea", 390),
    ("COFFEE-1", "Filter coffee beans", 1290),
    ("MUG-1", "Stoneware mug", 1800),
    ("KETTLE-1", "Gooseneck kettle", 5400),
    ("CUP-SET", "Set of six espresso cups with saucers", 3250),
]


def seed(server, token=None):
    """Customers, products and three orders (customers 0, 1 and 2 one each);
    returns their ids once every view has them."""
    bearer = token
    customers, products, orders, token = [], [], [], None
    for i, (name, email) in enumerate(CUSTOMERS):
        created = server.data(
            "mutation($i: RegisterCustomerInput!) { registerCustomer(input: $i) { id token } }",
            {"i": {"name": name, "email": email, "commandId": f"seed-customer-{i}"}},
            token=bearer,
        )["registerCustomer"]
        customers.append(created["id"])
        token = created["token"]
    for i, (sku, title, price) in enumerate(PRODUCTS):
        created = server.data(
            "mutation($i: AddProductInput!) { addProduct(input: $i) { id token } }",
            {"i": {"sku": sku, "title": title, "priceCents": price, "commandId": f"seed-product-{i}"}},
            token=bearer,
        )["addProduct"]
        products.append(created["id"])
        token = created["token"]
    for i in range(3):
        placed = server.data(
            "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { id token } }",
            {
                "i": {
                    "customerId": customers[i],
                    "lines": [{"productId": products[i], "quantity": i + 1}, {"productId": products[i + 2], "quantity": 1}],
                    "channel": "API",
                    "commandId": f"seed-order-{i}",
                }
            },
            token=bearer,
        )["placeOrder"]
        orders.append({"id": placed["id"], "customerId": customers[i]})
        token = placed["token"]
    # Wait until the views have all of it (consistentWith blocks until then).
    seen = server.data(
        "query($t: Token) { customers(first: 100, consistentWith: $t) { nodes { id } } products(first: 100, consistentWith: $t) { nodes { id } } orders(first: 5, consistentWith: $t) { nodes { id } } }",
        {"t": token},
        token=bearer,
    )
    assert len(seen["customers"]["nodes"]) == len(CUSTOMERS), seen
    assert len(seen["products"]["nodes"]) == len(PRODUCTS), seen
    assert len(seen["orders"]["nodes"]) == 3, seen
    return {"customers": customers, "products": products, "orders": orders}


def main():
    seed(Server.from_env())
    print(f"seeded {len(CUSTOMERS)} customers, {len(PRODUCTS)} products, 3 orders")


if __name__ == "__main__":
    main()
