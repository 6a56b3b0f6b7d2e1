"""GraphiQL at /: served from the binary, works offline, under the CSP."""
import json
import re
import time

from conftest import CSP, DESKTOP, PHONE, screenshot

QUERY_EDITOR = ".graphiql-query-editor .CodeMirror"
HEADERS_EDITOR = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"
RESULT = ".graphiql-response .CodeMirror"


def codemirror_value(page, selector):
    return page.evaluate("(s) => document.querySelector(s).CodeMirror.getValue()", selector)


def open_graphiql(context):
    page = context.new_page()
    response = page.goto("/")
    assert response.status == 200
    assert response.headers["content-security-policy"] == CSP
    page.wait_for_selector(QUERY_EDITOR)
    # The schema (introspection) has loaded: the documentation explorer lists the root types.
    page.click('[aria-label="Show Documentation Explorer"]')
    page.wait_for_function(
        "() => { const d = document.querySelector('.graphiql-doc-explorer'); return d && ['Query', 'Mutation', 'Subscription'].every((t) => d.innerText.includes(t)); }"
    )
    page.click('[aria-label="Hide Documentation Explorer"]')
    return page


def type_query(page, text):
    page.click(QUERY_EDITOR)
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.type(text)
    page.keyboard.press("Escape")  # closes an autocompletion list, if one is open
    typed = codemirror_value(page, QUERY_EDITOR)
    assert " ".join(typed.split()) == " ".join(text.split()), typed
    # GraphiQL parses the editor 100 ms after the last change and decides
    # from that parse whether an operation goes over the WebSocket.
    operation = "subscription" if text.lstrip().startswith("subscription") else "query"
    page.wait_for_function(
        "([s, op]) => { const cm = document.querySelector(s).CodeMirror; return (cm.operations || []).length === 1 && cm.operations[0].operation === op; }",
        arg=[QUERY_EDITOR, operation],
    )


def test_graphiql_loads_offline_and_runs_a_query(new_context, server):
    context, guard = new_context(DESKTOP)
    page = open_graphiql(context)
    # The headers editor is open and prefilled with the Authorization example.
    headers = codemirror_value(page, HEADERS_EDITOR)
    assert "Bearer <token from: twofold token --role customer --customer-id ID>" in headers
    json.loads(headers)  # GraphiQL parses it with JSON.parse before every request

    type_query(page, "{ projections { name } }")
    page.click(".graphiql-execute-button")
    page.wait_for_function(
        "(s) => { const cm = document.querySelector(s); return cm && cm.CodeMirror.getValue().includes('order_summary'); }",
        arg=RESULT,
    )
    shown = page.locator(".graphiql-response").inner_text()
    assert "projections" in shown and "order_summary" in shown
    answer = json.loads(codemirror_value(page, RESULT))
    expected = {p["name"] for p in server.data("{ projections { name } }")["projections"]}
    assert {p["name"] for p in answer["data"]["projections"]} == expected

    # Every resource came from the server itself, the bundles from /assets/vendor/.
    urls = [r.url for r in guard.requests]
    assert any("/assets/vendor/graphiql@" in u for u in urls)
    assert any("/assets/vendor/react@" in u for u in urls)
    assert any(u.endswith("/graphql") for u in urls)
    # The prefilled header is harmless and sent as is.
    posts = [r for r in guard.requests if r.url.endswith("/graphql") and r.method == "POST"]
    assert posts and "authorization-example" in posts[-1].all_headers()
    screenshot(page, "graphiql-desktop", "graphiql.png")


def test_graphiql_runs_a_subscription_over_the_websocket(new_context, server):
    context, guard = new_context(DESKTOP)
    page = open_graphiql(context)
    type_query(page, 'subscription { projectionUpdated(projections: ["customer_view"]) { projection streamIds } }')
    page.click(".graphiql-execute-button")
    # graphql-transport-ws on /graphql/ws, the headers editor as connection_init payload.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any('"subscribe"' in f for _, f in guard.frames_sent):
        page.wait_for_timeout(50)
    frames = [json.loads(f) for url, f in guard.frames_sent if url.endswith("/graphql/ws")]
    init = next(f for f in frames if f["type"] == "connection_init")
    assert "Authorization-Example" in init.get("payload", {})
    assert any(f["type"] == "subscribe" and "projectionUpdated" in f["payload"]["query"] for f in frames)

    created = server.data(
        'mutation { registerCustomer(input: {name: "Subscriber Sam", email: "sam-%d@example.com"}) { id } }' % int(time.time() * 1000)
    )["registerCustomer"]
    page.wait_for_function(
        "([s, id]) => { const cm = document.querySelector(s); return cm && cm.CodeMirror.getValue().includes(id); }",
        arg=[RESULT, created["id"]],
    )
    answer = json.loads(codemirror_value(page, RESULT))
    assert answer["data"]["projectionUpdated"]["projection"] == "customer_view"
    assert created["id"] in answer["data"]["projectionUpdated"]["streamIds"]
    page.click(".graphiql-execute-button")  # stops the subscription


def test_graphiql_dialogs_open_under_the_policy(new_context):
    """GraphiQL's modal dialogs (settings, shortcuts) inject one <style> element
    to lock the page's scrolling while open (react-remove-scroll). style-src
    'self' refuses it; nothing else is refused, and the dialogs work, since
    the page itself never scrolls (graphiql-page.css)."""
    context, guard = new_context(DESKTOP)
    guard.allow_csp(lambda v: v.get("directive") == "style-src-elem" and "graphiql.min.js" in (v.get("source") or ""))
    guard.allow_csp(lambda v: "console" in v and "Applying inline style violates" in v["console"])
    page = open_graphiql(context)
    for button in ('[aria-label="Open settings dialog"]', '[aria-label="Open short keys dialog"]'):
        page.click(button)
        page.wait_for_selector("[role=dialog]")
        assert page.locator("[role=dialog]").is_visible()
        page.keyboard.press("Escape")
        page.wait_for_selector("[role=dialog]", state="detached")
    guard.collect()
    assert all(v.get("directive", "style-src-elem") == "style-src-elem" for v in guard.csp), guard.csp


def test_graphiql_at_phone_width(new_context):
    context, _ = new_context(PHONE)
    page = open_graphiql(context)
    screenshot(page, "graphiql-phone")


def test_the_docs_panel_describes_the_search_argument_of_orders(new_context, server):
    context, _ = new_context(DESKTOP)
    page = open_graphiql(context)
    page.click('[aria-label="Show Documentation Explorer"]')
    explorer = page.locator(".graphiql-doc-explorer")
    explorer.locator(".graphiql-doc-explorer-type-name", has_text=re.compile(r"^Query$")).first.click()
    explorer.locator(".graphiql-doc-explorer-field-name", has_text=re.compile(r"^orders$")).first.click()
    page.wait_for_selector(".graphiql-doc-explorer-title:text-is('orders')")
    # The description the schema gives `orders(search:)`, as the server introspects it.
    described = server.data('{ __type(name: "Query") { fields { name args { name description } } } }')["__type"]["fields"]
    args = {a["name"]: a["description"] for f in described if f["name"] == "orders" for a in f["args"]}
    assert args["search"] and args["filter"] and args["orderBy"] and args["after"]
    search = explorer.locator(".graphiql-doc-explorer-argument").filter(
        has=page.locator(".graphiql-doc-explorer-argument-name", has_text=re.compile(r"^search$"))
    )
    search.wait_for()
    shown = " ".join(search.inner_text().split())
    assert "Full-text search over the customer's name and email" in shown, shown
    assert "words are ANDed" in shown, shown
    screenshot(page, "graphiql-docs-orders")
