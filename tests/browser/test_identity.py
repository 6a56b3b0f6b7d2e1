"""Both pages against a server that requires bearer tokens (keyed_server:
TWOFOLD_JWT_SECRET set, tokens minted with `twofold token`).

The board: a customer token lists only that customer's orders, orders for
itself and cancels, and sees the server's FORBIDDEN when it tries to ship; a
staff token does everything; no token, a bad token and a token that expires
while connected each show a clear notice instead of a broken page. GraphiQL:
an `Authorization` header in its headers editor goes on queries and in the
subscription's connection_init.
"""
import base64
import hashlib
import hmac
import json
import time

from board_page import (
    ORDER,
    RECORD_VISIBILITY,
    listed_ids,
    order,
    place_order,
    use_token,
    visibility_seen,
    wait_connected,
    wait_viewer,
    wait_visible,
)
from conftest import CSP, DESKTOP, PHONE, screenshot
from test_graphiql import HEADERS_EDITOR, RESULT, codemirror_value, open_graphiql, type_query

NOTICE = "[data-testid=auth-notice]"
PLACE_ORDER = "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { id token } }"
SHIP_ORDER = "mutation($i: ShipOrderInput!) { shipOrder(input: $i) { token } }"

# Every order id the list ever rendered (render() replaces the rows, so each one passes here).
RECORD_ORDER_IDS = """
() => {
  window.__orderIds = new Set();
  const note = () => document.querySelectorAll('[data-testid=order]').forEach((li) => window.__orderIds.add(li.dataset.orderId));
  note();
  new MutationObserver(note).observe(document.querySelector('[data-testid=order-list]'), { childList: true });
}
"""


def open_board(context):
    page = context.new_page()
    response = page.goto("/board")
    assert response.status == 200
    assert response.headers["content-security-policy"] == CSP
    return page


def place_for(keyed, customer_id, product_id, command_id=None):
    """Places an order through the API with the staff token; returns {id, token}."""
    i = {"customerId": customer_id, "lines": [{"productId": product_id, "quantity": 1}], "channel": "API"}
    if command_id:
        i["commandId"] = command_id
    return keyed.data(PLACE_ORDER, {"i": i}, token=keyed.staff)["placeOrder"]


def orders_of(keyed, customer_id):
    nodes = keyed.data(
        "query($c: ID!) { orders(customerId: $c, first: 100) { nodes { id customerId status } } }", {"c": customer_id}, token=keyed.staff
    )["orders"]["nodes"]
    return nodes


def expired_token(keyed, customer_id):
    """An HS256 token signed with the server's own secret, an hour past its exp."""
    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": customer_id, "role": "customer", "customer_id": customer_id, "iat": now - 7200, "exp": now - 3600}).encode())
    signature = b64(hmac.new(keyed.jwt_secret.encode(), header + b"." + claims, hashlib.sha256).digest())
    return (header + b"." + claims + b"." + signature).decode()


def wait_notice(page, kind, code):
    notice = page.locator(f"{NOTICE}[data-kind={kind}][data-code={code}]")
    notice.wait_for()
    return notice


def test_a_customer_token_sees_only_its_own_orders_orders_for_itself_and_cannot_ship(new_context, keyed_server):
    keyed = keyed_server
    customers, products = keyed.seeded["customers"], keyed.seeded["products"]
    me, other = customers[0], customers[1]
    mine_seeded = next(o["id"] for o in keyed.seeded["orders"] if o["customerId"] == me)
    others_seeded = next(o["id"] for o in keyed.seeded["orders"] if o["customerId"] == other)
    token = keyed.mint("customer", customer_id=me)

    context, guard = new_context(DESKTOP, target=keyed)
    page = open_board(context)
    page.evaluate(RECORD_ORDER_IDS)
    use_token(page, token)
    wait_viewer(page, "CUSTOMER")
    wait_connected(page)
    assert page.locator(NOTICE).is_hidden()
    page.wait_for_function("(id) => document.querySelector(`[data-testid=order][data-order-id='${id}'][data-listed=true]`)", arg=mine_seeded)
    assert "Ada Lovelace" in page.inner_text("[data-testid=viewer]")

    # Its select holds itself only, locked; the products are all there.
    options = page.eval_on_selector_all("[data-testid=customer-select] option", "os => os.map((o) => o.value)")
    assert options == [me]
    assert page.is_disabled("[data-testid=customer-select]")
    page.wait_for_function(f"() => document.querySelectorAll('[data-testid=product-select] option').length === {len(products)}")

    # Someone else's order, placed just before the customer's own: it must never show.
    others_new = place_for(keyed, other, products[0])["id"]

    # 1. It places an order for itself (no customerId sent: the token names the customer).
    page.evaluate(RECORD_VISIBILITY)
    mark = len(guard.requests)
    order_id = place_order(page, customer=None, product=1, quantity=2)
    wait_visible(page, order_id)
    assert visibility_seen(page, order_id) == ["pending", "visible"]
    posts = [r for r in guard.requests[mark:] if r.method == "POST" and "BoardPlaceOrder" in (r.post_data or "")]
    assert len(posts) == 1
    assert "customerId" not in json.loads(posts[0].post_data)["variables"]["input"]
    assert posts[0].all_headers()["authorization"] == f"Bearer {token}"
    # Read at least as new as its own write (and so as the other customer's order before it).
    page.wait_for_selector(f'{ORDER}[data-order-id="{order_id}"][data-listed=true]')
    assert {o["customerId"] for o in orders_of(keyed, me)} == {me}
    assert set(listed_ids(page)) == {o["id"] for o in orders_of(keyed, me)}

    # 2. It cancels it.
    order(page, order_id).locator("[data-testid=cancel-order]").click()
    page.wait_for_selector(f'{ORDER}[data-order-id="{order_id}"][data-status=CANCELLED]')
    statuses = {o["id"]: o["status"] for o in orders_of(keyed, me)}
    assert statuses[order_id] == "CANCELLED"

    # 3. Shipping is for staff: the button says so, and the server refuses it
    # all the same when the page is made to send it (an edited or stale page).
    ship = order(page, mine_seeded).locator("[data-testid=ship-order]")
    assert ship.is_disabled()
    assert ship.get_attribute("data-staff-only") == "true"
    assert ship.get_attribute("title") == "only staff may ship orders"
    expected = keyed.graphql(
        SHIP_ORDER, {"i": {"orderId": mine_seeded, "carrier": "Demo Post", "trackingNumber": "X"}}, token=token
    )["errors"][0]
    assert expected["extensions"]["code"] == "FORBIDDEN"
    page.eval_on_selector(
        f'{ORDER}[data-order-id="{mine_seeded}"] [data-testid=ship-order]', "(b) => { b.disabled = false; b.click(); }"
    )
    error = page.locator("[data-testid=error][data-code=FORBIDDEN]").first
    error.wait_for()
    assert page.locator("[data-testid=errors]").is_visible()
    assert error.locator("[data-testid=error-message]").inner_text() == expected["message"]
    assert error.locator("[data-testid=error-code]").inner_text() == "FORBIDDEN"
    assert "shipOrder" in error.inner_text()
    assert statuses[mine_seeded] == "PLACED"
    assert {o["id"]: o["status"] for o in orders_of(keyed, me)}[mine_seeded] == "PLACED"

    # The other customer's orders never appeared, not even for a moment.
    seen = set(page.evaluate("() => [...window.__orderIds]"))
    assert order_id in seen and mine_seeded in seen
    assert others_seeded not in seen and others_new not in seen
    assert not seen & {o["id"] for o in orders_of(keyed, other)}
    screenshot(page, "board-customer")


def test_a_staff_token_sees_every_customer_and_ships(new_context, keyed_server):
    keyed = keyed_server
    customers = keyed.seeded["customers"]
    context, guard = new_context(DESKTOP, target=keyed)
    page = open_board(context)
    use_token(page, keyed.mint("staff", ttl="10m"))
    wait_viewer(page, "STAFF")
    wait_connected(page)
    assert page.locator(NOTICE).is_hidden()
    for seeded in keyed.seeded["orders"]:
        page.wait_for_selector(f'{ORDER}[data-order-id="{seeded["id"]}"][data-listed=true]')
    page.wait_for_function(f"() => document.querySelectorAll('[data-testid=customer-select] option').length === {len(customers)}")
    assert page.is_enabled("[data-testid=customer-select]")

    page.evaluate(RECORD_VISIBILITY)
    order_id = place_order(page, customer=1, product=0)
    wait_visible(page, order_id)
    assert visibility_seen(page, order_id) == ["pending", "visible"]
    row = order(page, order_id)
    assert row.locator("[data-testid=ship-order]").get_attribute("data-staff-only") == "false"
    row.locator("[data-testid=ship-order]").click()
    page.wait_for_selector(f'{ORDER}[data-order-id="{order_id}"][data-status=SHIPPED]')
    summary = keyed.data("query($id: ID!) { order(id: $id) { customerId status carrier } }", {"id": order_id}, token=keyed.staff)["order"]
    assert summary == {"customerId": page.locator("[data-testid=customer-select] option").nth(1).get_attribute("value"), "status": "SHIPPED", "carrier": "Demo Post"}
    # And cancels (another new order: the seeded ones stay as the other tests expect them).
    second = place_order(page, customer=2, product=3)
    wait_visible(page, second)
    order(page, second).locator("[data-testid=cancel-order]").click()
    page.wait_for_selector(f'{ORDER}[data-order-id="{second}"][data-status=CANCELLED]')
    assert page.locator("[data-testid=errors]").is_hidden()


def test_without_a_token_the_board_says_unauthenticated(new_context, keyed_server):
    context, guard = new_context(PHONE, target=keyed_server)
    page = open_board(context)
    notice = wait_notice(page, "anonymous", "UNAUTHENTICATED")
    assert notice.locator("[data-testid=auth-notice-code]").inner_text() == "UNAUTHENTICATED"
    assert "requires a bearer token" in notice.inner_text()
    assert "twofold token --role staff" in notice.inner_text()
    assert page.get_attribute("[data-testid=viewer]", "data-auth") == "anonymous"
    assert page.get_attribute("[data-testid=connection-status]", "data-state") == "signed-out"
    assert page.is_disabled("[data-testid=place-order]")
    assert page.locator(ORDER).count() == 0
    assert page.inner_text("[data-testid=orders-empty]") == "Sign in with a token to see orders."
    # Nothing was asked for that the server would refuse, and no WebSocket was opened.
    posts = [r for r in guard.requests if r.url.endswith("/graphql") and r.method == "POST"]
    assert [json.loads(r.post_data)["query"].split("{")[0].strip() for r in posts] == ["query BoardViewer"]
    assert guard.websockets == []
    width, client = page.evaluate("() => [document.scrollingElement.scrollWidth, document.scrollingElement.clientWidth]")
    assert width <= client, (width, client)
    screenshot(page, "board-no-token")


def test_a_bad_token_shows_the_servers_reason_and_a_good_one_recovers(new_context, keyed_server):
    keyed = keyed_server
    me = keyed.seeded["customers"][0]
    context, guard = new_context(DESKTOP, target=keyed)
    page = open_board(context)
    wait_notice(page, "anonymous", "UNAUTHENTICATED")
    bad = {
        "not a JWT": "not-a-jwt",
        "signed with another secret": keyed.mint("staff", secret="another secret, at least thirty-two bytes long"),
        "expired": expired_token(keyed, me),
    }
    shown = set()
    for what, token in bad.items():
        expected = keyed.graphql("{ viewer { role } }", token=token)
        assert "data" not in expected, what
        message = expected["errors"][0]["message"]
        use_token(page, token)
        notice = wait_notice(page, "refused", "UNAUTHENTICATED")
        page.wait_for_function(
            "(m) => document.querySelector('[data-testid=auth-notice-message]').textContent === m", arg=message
        )
        assert "refused the token" in notice.inner_text(), what
        assert page.get_attribute("[data-testid=viewer]", "data-auth") == "refused"
        assert page.get_attribute("[data-testid=connection-status]", "data-state") == "signed-out"
        assert page.is_disabled("[data-testid=place-order]")
        shown.add(message)
    assert len(shown) == len(bad), shown  # each reason told apart
    assert guard.websockets == []  # a refused token never opens a WebSocket

    # A valid token takes over at once.
    use_token(page, keyed.mint("customer", customer_id=me))
    wait_viewer(page, "CUSTOMER")
    wait_connected(page)
    assert page.locator(NOTICE).is_hidden()
    page.wait_for_selector(f"{ORDER}[data-listed=true]")


def test_a_token_that_expires_while_connected_closes_with_4403_and_is_shown(new_context, keyed_server):
    """The server closes the WebSocket with 4403 when the token's exp passes;
    the board says why and stops retrying with the same token (graphql-ws would
    retry 4403 for ever)."""
    keyed = keyed_server
    context, guard = new_context(DESKTOP, target=keyed)
    page = open_board(context)
    use_token(page, keyed.mint("staff", ttl="4s"))
    wait_viewer(page, "STAFF")
    wait_connected(page)
    notice = wait_notice(page, "refused", "CLOSE_4403")
    assert "token has expired" in notice.inner_text()
    assert page.get_attribute("[data-testid=connection-status]", "data-state") == "signed-out"
    assert page.locator("[data-testid=error][data-code=CLOSE_4403]").count() == 1
    assert len(guard.websockets) == 1
    # No reconnect follows: the one socket is closed, the client disposed.
    assert page.evaluate("() => document.querySelector('[data-testid=connection-status]').textContent") == "not connected: token refused"


def test_graphiql_with_a_customer_token_runs_viewer_and_a_subscription(new_context, keyed_server):
    keyed = keyed_server
    customers, products = keyed.seeded["customers"], keyed.seeded["products"]
    me, other = customers[0], customers[1]
    token = keyed.mint("customer", customer_id=me)
    context, guard = new_context(DESKTOP, target=keyed)
    page = open_graphiql(context)
    headers = json.dumps({"Authorization": f"Bearer {token}"})
    page.evaluate("([s, v]) => document.querySelector(s).CodeMirror.setValue(v)", [HEADERS_EDITOR, headers])
    assert json.loads(codemirror_value(page, HEADERS_EDITOR)) == {"Authorization": f"Bearer {token}"}

    type_query(page, "{ viewer { role customerId } }")
    page.click(".graphiql-execute-button")
    page.wait_for_function(
        "(s) => { const cm = document.querySelector(s); return cm && cm.CodeMirror.getValue().includes('CUSTOMER'); }", arg=RESULT
    )
    assert json.loads(codemirror_value(page, RESULT)) == {"data": {"viewer": {"role": "CUSTOMER", "customerId": me}}}
    assert "CUSTOMER" in page.locator(".graphiql-response").inner_text()
    posts = [r for r in guard.requests if r.url.endswith("/graphql") and r.method == "POST" and "viewer" in (r.post_data or "")]
    assert posts and posts[-1].all_headers()["authorization"] == f"Bearer {token}"

    # A subscription over /graphql/ws with the same header in connection_init.
    # includeCurrent: its first item (the current checkpoint) says it is live.
    type_query(page, 'subscription { projectionUpdated(projections: ["order_summary"], includeCurrent: true) { projection token streamIds } }')
    page.click(".graphiql-execute-button")
    page.wait_for_function(
        "(s) => { const cm = document.querySelector(s); return cm && cm.CodeMirror.getValue().includes('order_summary'); }", arg=RESULT
    )
    frames = [json.loads(f) for url, f in guard.frames_sent if url.endswith("/graphql/ws")]
    init = next(f for f in frames if f["type"] == "connection_init")
    assert init["payload"] == {"Authorization": f"Bearer {token}"}
    assert any(f["type"] == "subscribe" and "projectionUpdated" in f["payload"]["query"] for f in frames)

    # Another customer's order first, then its own: only its own reaches it.
    others = place_for(keyed, other, products[0])["id"]
    own = place_for(keyed, me, products[1])["id"]
    page.wait_for_function(
        "([s, id]) => { const cm = document.querySelector(s); return cm && cm.CodeMirror.getValue().includes(id); }", arg=[RESULT, own]
    )
    answer = json.loads(codemirror_value(page, RESULT))
    assert answer["data"]["projectionUpdated"]["projection"] == "order_summary"
    assert own in answer["data"]["projectionUpdated"]["streamIds"]
    received = "".join(f for _, f in guard.frames_received)
    assert own in received and others not in received
    page.click(".graphiql-execute-button")  # stops the subscription
    screenshot(page, "graphiql-customer")

