"""A page on another origin calls the API with `fetch` and graphql-ws:
both work when `--cors-origin` allows that origin, and the browser blocks
both when it does not.

The `cors` fixture starts its own `twofold serve` (open development mode, its
own port and database, `--cors-origin http://127.0.0.1:<allowed>`) and two
small static servers (Python's http.server, in threads) on two other ports:
the allowed origin and one that is not allowed. Both serve the same page: a
module that imports the graphql-ws client the server vendors (the same files,
src/http/static/vendor/graphql-ws@6.4.2/, served from the page's own origin so
that loading it does not depend on CORS) and calls the API:

1. `fetch` POST /graphql with `registerCustomer` (JSON, so the browser sends a
   preflight first);
2. graphql-ws on ws://…/graphql/ws: `{ viewer { role } }`, then, when the
   fetch created a customer, `writeVisible` with its token and
   `customer(id)` over the same connection.

Allowed origin: the customer is created, the WebSocket is acknowledged and
every operation returns the expected data. Other origin: the fetch rejects
(`TypeError: Failed to fetch`, Chromium blaming the CORS policy), the
mutation never reaches the server (no such customer), and the WebSocket never
opens (closed with 1006 before any ack; Chromium logs the upgrade's 403).
The server's side of it is checked without a browser: the preflight from the
other origin gets 403 (204 with `Access-Control-Allow-Origin` for the allowed
one) and so does its WebSocket upgrade (101 and `connection_ack` for the
allowed one).

The guard here records requests instead of routing them: while Playwright
routes requests it answers CORS preflights itself (with
`Access-Control-Allow-Origin` set to the caller's origin), which would hide the
server's answer. Any request outside the two origins (the page's and the
API's) still fails the test, as do uncaught page errors.
"""
import http.client
import http.server
import json
import os
import threading
import uuid
from urllib.parse import urlsplit

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from conftest import CSP_RECORDER, DESKTOP, ROOT, Guard
from twofold_server import Server, free_port

VENDOR = ROOT / "src" / "http" / "static" / "vendor"
GRAPHQL_WS = "graphql-ws@6.4.2"

PAGE = b"""<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>another origin</title>
<link rel="icon" href="data:,">
<script type="module" src="/cors.js"></script>
<p>A page on another origin than the API.</p>
</html>
"""

MODULE = """
import { createClient } from '/vendor/%(graphql_ws)s/client.js';

const REGISTER = 'mutation($i: RegisterCustomerInput!) { registerCustomer(input: $i) { id token } }';
const VIEWER = '{ viewer { role } }';
const VISIBLE = 'subscription($t: Token!) { writeVisible(token: $t, timeoutMs: 5000) { visible reason } }';
const CUSTOMER = 'query($id: ID!) { customer(id: $id) { name email } }';

async function overFetch(api, input) {
  try {
    const response = await fetch(`${api}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: REGISTER, variables: { i: input } }),
    });
    return { status: response.status, body: await response.json() };
  } catch (e) {
    return { error: `${e.name}: ${e.message}` };
  }
}

function describe(e) {
  if (e && typeof e.code === 'number') return { close: e.code, reason: e.reason };
  if (Array.isArray(e)) return { graphql: e.map((x) => x.message) };
  if (e instanceof Event) return { event: e.type };
  return { other: String(e) };
}

// One operation: every `next` payload, then how it ended.
function overWs(client, payload) {
  return new Promise((resolve) => {
    const results = [];
    client.subscribe(payload, {
      next: (r) => results.push(r),
      error: (e) => resolve({ results, error: describe(e) }),
      complete: () => resolve({ results, completed: true }),
    });
  });
}

// The client's WebSockets, as the browser saw them: opened or not, and the close code.
const sockets = [];
class RecordedWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    const seen = { opened: false, error: false, close: null };
    sockets.push(seen);
    this.addEventListener('open', () => { seen.opened = true; });
    this.addEventListener('error', () => { seen.error = true; });
    seen.closed = new Promise((resolve) => this.addEventListener('close', (e) => { seen.close = e.code; resolve(); }));
  }
}

window.callApi = async (api, input) => {
  const fetched = await overFetch(api, input);
  const events = [];
  sockets.length = 0;
  const client = createClient({
    url: `${api.replace(/^http/, 'ws')}/graphql/ws`,
    webSocketImpl: RecordedWebSocket,
    retryAttempts: 0,
    lazyCloseTimeout: 30000,  // one connection for every operation
    on: {
      opened: () => events.push('opened'),
      connected: () => events.push('connected'),
      closed: (e) => events.push(`closed ${e.code}`),
      error: (e) => events.push(`error ${e.type}`),
    },
  });
  const ws = { viewer: await overWs(client, { query: VIEWER }) };
  const created = fetched.body && fetched.body.data && fetched.body.data.registerCustomer;
  if (created) {
    ws.visible = await overWs(client, { query: VISIBLE, variables: { t: created.token } });
    ws.customer = await overWs(client, { query: CUSTOMER, variables: { id: created.id } });
  }
  await client.dispose();
  await Promise.all(sockets.map((s) => s.closed));
  return { fetched, ws, events, sockets: sockets.map(({ opened, error, close }) => ({ opened, error, close })) };
};
window.ready = true;
""" % {"graphql_ws": GRAPHQL_WS}


class StaticHandler(http.server.BaseHTTPRequestHandler):
    """`/` (the page), `/cors.js` (its module) and the vendored graphql-ws files."""

    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/":
            return self._send(PAGE, "text/html; charset=utf-8")
        if path == "/cors.js":
            return self._send(MODULE.encode(), "text/javascript; charset=utf-8")
        prefix = f"/vendor/{GRAPHQL_WS}/"
        if path.startswith(prefix) and path.endswith(".js") and "/" not in path[len(prefix) :]:
            file = VENDOR / GRAPHQL_WS / path[len(prefix) :]
            if file.is_file():
                return self._send(file.read_bytes(), "text/javascript; charset=utf-8")
        self._send(b"not found\n", "text/plain; charset=utf-8", status=404)

    def _send(self, body, content_type, status=200):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.send_header("cache-control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class StaticOrigin:
    """The page above on http://127.0.0.1:<free port>, served from a thread."""

    def __init__(self):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StaticHandler)
        self.httpd.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"static {self.origin}", daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


class TwoOrigins(Guard):
    """The guard of conftest.py, for a page on one origin calling the API on
    another: both are local, anything else is recorded and fails the test.
    It does not route (see the module docstring)."""

    def __init__(self, page_origin, api_origin):
        super().__init__(page_origin)
        self.origins = {(urlsplit(o).hostname, urlsplit(o).port) for o in (page_origin, api_origin)}

    def local(self, url):
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about"):
            return True
        return parts.scheme in ("http", "ws") and (parts.hostname, parts.port) in self.origins

    def attach(self, context):
        context.on("request", self._on_request)
        context.on("page", self._on_page)
        context.add_init_script(CSP_RECORDER)


@pytest.fixture(scope="module")
def cors():
    """The API with one allowed origin, and the two static origins."""
    allowed, other = StaticOrigin(), StaticOrigin()
    workdir = os.environ["TWOFOLD_WORKDIR"]
    api = Server(
        os.environ["TWOFOLD_BIN"],
        free_port(),
        f"sqlite://{workdir}/cors.db?mode=rwc",
        workdir,
        name="cors",
        extra_args=["--cors-origin", allowed.origin],
    )
    try:
        api.start()
        yield {"api": api, "allowed": allowed.origin, "other": other.origin}
    finally:
        api.stop()
        allowed.stop()
        other.stop()


@pytest.fixture
def open_page(browser, cors):
    """open_page(origin) -> (page, guard): the page above, loaded from `origin`."""
    made = []

    def make(origin):
        context = browser.new_context(viewport=DESKTOP, base_url=origin)
        context.set_default_timeout(15000)
        guard = TwoOrigins(origin, cors["api"].url)
        guard.attach(context)
        made.append((context, guard))
        page = context.new_page()
        console = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        response = page.goto("/")
        assert response.status == 200
        page.wait_for_function("window.ready === true")
        assert page.evaluate("window.location.origin") == origin
        return page, guard, console

    yield make
    problems = []
    for context, guard in made:
        problems += guard.problems()
        context.close()
    assert not problems, "\n".join(problems)


def call_api(page, api, name):
    email = f"{name.lower().replace(' ', '.')}@example.com"
    return page.evaluate("([api, input]) => window.callApi(api, input)", [api.url, {"name": name, "email": email}]), email


def emails(api):
    nodes = api.data("{ customers(first: 100) { nodes { email } } }")["customers"]["nodes"]
    return {n["email"] for n in nodes}


def preflight(api, origin):
    """The browser's preflight for a JSON POST, sent by hand: (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    try:
        connection.request(
            "OPTIONS",
            "/graphql",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"},
        )
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        connection.close()


def post_from(api, origin, query):
    """A POST that skips the preflight (as a form or a script outside a browser would): (status, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    try:
        body = json.dumps({"query": query})
        connection.request("POST", "/graphql", body=body, headers={"Origin": origin, "Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        connection.close()


def upgrade(api, origin):
    """A graphql-transport-ws upgrade with `Origin: origin`: the first message
    after connection_init, or the refusal (status, body)."""
    try:
        with connect(f"ws://127.0.0.1:{api.port}/graphql/ws", origin=origin, subprotocols=["graphql-transport-ws"], open_timeout=10) as ws:
            ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            return 101, json.loads(ws.recv(timeout=10))
    except InvalidStatus as e:
        return e.response.status_code, e.response.body.decode(errors="replace")


def test_an_allowed_origin_calls_the_api_with_fetch_and_graphql_ws(open_page, cors):
    api = cors["api"]
    page, guard, console = open_page(cors["allowed"])
    name = f"Allowed {uuid.uuid4().hex[:8]}"
    result, email = call_api(page, api, name)

    # fetch: the customer was created, and the browser let the page read the answer.
    fetched = result["fetched"]
    assert "error" not in fetched, result
    assert fetched["status"] == 200, result
    assert "errors" not in fetched["body"], result
    created = fetched["body"]["data"]["registerCustomer"]
    assert created["id"] and created["token"], result
    post = next(r for r in guard.requests if r.method == "POST" and r.url == f"{api.url}/graphql")
    assert post.response().all_headers()["access-control-allow-origin"] == cors["allowed"]

    # graphql-ws: one connection, acknowledged, and each operation's data.
    ws = result["ws"]
    assert ws["viewer"] == {"results": [{"data": {"viewer": {"role": "STAFF"}}}], "completed": True}, result
    assert ws["visible"]["completed"] and [r["data"]["writeVisible"]["visible"] for r in ws["visible"]["results"]] == [True], result
    assert ws["customer"] == {"results": [{"data": {"customer": {"name": name, "email": email}}}], "completed": True}, result
    assert result["events"] == ["opened", "connected"], result  # one connection, acknowledged once
    assert result["sockets"] == [{"opened": True, "error": False, "close": 1000}], result  # closed by dispose()
    assert [w.url for w in guard.websockets] == [f"ws://127.0.0.1:{api.port}/graphql/ws"]

    # And it is there for everyone else too.
    assert api.data("query($id: ID!) { customer(id: $id) { name } }", {"id": created["id"]})["customer"] == {"name": name}
    assert not [line for line in console if line.startswith("error:")], console

    # The server's side, without a browser: preflight 204 with the origin, upgrade 101 and ack.
    status, headers, _ = preflight(api, cors["allowed"])
    assert status == 204
    assert headers["access-control-allow-origin"] == cors["allowed"]
    assert "POST" in headers["access-control-allow-methods"]
    assert "content-type" in headers["access-control-allow-headers"].lower()
    assert upgrade(api, cors["allowed"]) == (101, {"type": "connection_ack"})


def test_another_origin_is_refused_both_fetch_and_websocket(open_page, cors):
    api = cors["api"]
    other = cors["other"]
    page, guard, console = open_page(other)
    name = f"Refused {uuid.uuid4().hex[:8]}"
    result, email = call_api(page, api, name)

    # fetch: rejected by the browser, because of the CORS policy...
    assert result["fetched"] == {"error": "TypeError: Failed to fetch"}, result
    blocked = [line for line in console if "blocked by CORS policy" in line]
    assert blocked, console
    assert all(f"from origin '{other}'" in line and "Response to preflight request" in line for line in blocked), console
    # ...and the mutation never reached the server (the preflight was refused).
    assert email not in emails(api)

    # graphql-ws: the WebSocket never opened (an error, then closed abnormally), no ack, no data.
    assert result["ws"] == {"viewer": {"results": [], "error": {"event": "error"}}}, result
    assert result["events"] == ["error error"], result  # neither opened nor connected
    assert result["sockets"] == [{"opened": False, "error": True, "close": 1006}], result
    refused = f"WebSocket connection to 'ws://127.0.0.1:{api.port}/graphql/ws' failed: Error during WebSocket handshake: Unexpected response code: 403"
    assert any(refused in line for line in console), console  # the browser saw the server's 403
    assert [w.url for w in guard.websockets] == [f"ws://127.0.0.1:{api.port}/graphql/ws"]
    assert guard.frames_sent == [] and guard.frames_received == []

    # The server refused both (not a network failure): preflight 403, upgrade 403.
    status, headers, body = preflight(api, other)
    assert status == 403, (status, headers, body)
    assert "access-control-allow-origin" not in headers
    assert "may not call the API" in body
    assert json.loads(body)["errors"][0]["extensions"]["code"] == "FORBIDDEN", body
    status, body = upgrade(api, other)
    assert status == 403, (status, body)
    assert "may not open a WebSocket" in body

    # A mutation sent without a preflight is refused before it runs.
    sneaky = f"sneaky.{uuid.uuid4().hex[:8]}@example.com"
    mutation = 'mutation { registerCustomer(input: { name: "Sneaky", email: "%s" }) { id } }' % sneaky
    status, headers, body = post_from(api, other, mutation)
    assert status == 403, (status, body)
    assert "access-control-allow-origin" not in headers
    assert json.loads(body)["errors"][0]["extensions"]["code"] == "FORBIDDEN", body
    assert sneaky not in emails(api)
