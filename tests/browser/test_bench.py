"""Click-to-visible over 50 orders: placed from the board in Chromium, and the
same loop without a browser (a Python client: placeOrder over a kept-alive
HTTP connection, then writeVisible over an open graphql-transport-ws
WebSocket). Both against the same server; p50/p99 printed and written to
target/browser-bench.json."""
import http.client
import json
import math
import os
import platform
import statistics
import time
import uuid

from websockets.sync.client import connect

from board_page import open_board, place_order, wait_visible
from conftest import DESKTOP, ROOT

ORDERS = 50
# What the board sends, word for word (board.js: PLACE_ORDER, WRITE_VISIBLE, VISIBLE_IN, WAIT_MS).
PLACE_ORDER = "mutation BoardPlaceOrder($input: PlaceOrderInput!) { placeOrder(input: $input) { id token } }"
WRITE_VISIBLE = """subscription BoardWriteVisible($token: Token!, $projections: [String!], $timeoutMs: Int) {
  writeVisible(token: $token, projections: $projections, timeoutMs: $timeoutMs) { token projections visible }
}"""
VISIBLE_IN = ["order_summary"]
WAIT_MS = 10000


def percentile(sorted_values, p):
    """Nearest-rank percentile."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summary(samples, what):
    ordered = sorted(samples)
    return {
        "what": what,
        "orders": len(samples),
        "p50_ms": percentile(ordered, 50),
        "p99_ms": percentile(ordered, 99),
        "min_ms": ordered[0],
        "max_ms": ordered[-1],
        "mean_ms": round(statistics.fmean(samples), 1),
        "samples_ms": samples,
    }


class PythonClient:
    """The board's loop without a browser: one HTTP/1.1 keep-alive connection and one WebSocket."""

    def __init__(self, server):
        self.http = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        self.ws = connect(f"ws://127.0.0.1:{server.port}/graphql/ws", subprotocols=["graphql-transport-ws"], open_timeout=10)
        self.ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert self.receive()["type"] == "connection_ack"
        self.ids = 0

    def receive(self):
        while True:
            message = json.loads(self.ws.recv(timeout=30))
            if message["type"] == "ping":
                self.ws.send(json.dumps({"type": "pong"}))
                continue
            if message["type"] != "pong":
                return message

    def place(self, customer_id, product_id, quantity):
        body = json.dumps(
            {
                "query": PLACE_ORDER,
                "variables": {
                    "input": {
                        "customerId": customer_id,
                        "lines": [{"productId": product_id, "quantity": quantity}],
                        "channel": "WEB",
                        "commandId": str(uuid.uuid4()),
                    }
                },
            }
        )
        self.http.request("POST", "/graphql", body=body, headers={"content-type": "application/json", "accept": "application/graphql-response+json, application/json"})
        answer = json.loads(self.http.getresponse().read())
        assert not answer.get("errors"), answer
        return answer["data"]["placeOrder"]

    def wait_visible(self, token):
        """Subscribes writeVisible(token) and returns once it says visible (asking again after a timeout)."""
        while True:
            self.ids += 1
            sid = str(self.ids)
            variables = {"token": token, "projections": VISIBLE_IN, "timeoutMs": WAIT_MS}
            self.ws.send(json.dumps({"id": sid, "type": "subscribe", "payload": {"query": WRITE_VISIBLE, "variables": variables}}))
            visible = False
            while True:
                message = self.receive()
                assert message.get("id") == sid and message["type"] in ("next", "complete"), message
                if message["type"] == "complete":
                    break
                assert not message["payload"].get("errors"), message
                visible = message["payload"]["data"]["writeVisible"]["visible"]
            if visible:
                return

    def close(self):
        self.ws.close()
        self.http.close()


def test_click_to_visible_over_50_orders_in_the_browser_and_without(new_context, server):
    # In the browser: the click on Place order to writeVisible's visible: true, measured in the page.
    context, _ = new_context(DESKTOP)
    page = open_board(context)
    customers = page.eval_on_selector_all("[data-testid=customer-select] option", "os => os.map((o) => o.value)")
    products = page.eval_on_selector_all("[data-testid=product-select] option", "os => os.map((o) => o.value)")
    browser = []
    for i in range(ORDERS):
        order_id = place_order(page, customer=i % len(customers), product=i % len(products), quantity=1 + i % 3)
        browser.append(wait_visible(page, order_id))

    # Without a browser: the same requests, the same customers, products and quantities.
    client = PythonClient(server)
    python = []
    try:
        for i in range(ORDERS):
            started = time.perf_counter()
            placed = client.place(customers[i % len(customers)], products[i % len(products)], 1 + i % 3)
            client.wait_visible(placed["token"])
            python.append(round((time.perf_counter() - started) * 1000, 1))
    finally:
        client.close()

    result = {
        "orders": ORDERS,
        "browser": summary(
            browser,
            "click on Place order -> writeVisible(token, [order_summary]) answers visible: true, measured in the page (data-click-to-visible-ms, whole ms)",
        ),
        "without_browser": summary(
            python,
            "the same loop from Python: placeOrder (HTTP keep-alive) -> writeVisible (open WebSocket) answers visible: true, time.perf_counter",
        ),
        "setup": {
            "server": "twofold serve, SQLite, --role all, async projections (defaults), open development mode",
            "browser": "headless Chromium (Debian), Playwright route interception on every request",
            "without_browser": "Python http.client + websockets (sync client), in the test process",
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        },
    }
    out = ROOT / "target" / "browser-bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for label, key in (("in the browser     ", "browser"), ("without a browser  ", "without_browser")):
        r = result[key]
        print(f"\nclick-to-visible over {ORDERS} orders {label}: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms "
              f"(min {r['min_ms']}, max {r['max_ms']}, mean {r['mean_ms']})", end="")
    print(f"\n-> {out}")
    assert len(browser) == ORDERS and all(s >= 0 for s in browser)
    assert len(python) == ORDERS and all(s >= 0 for s in python)
