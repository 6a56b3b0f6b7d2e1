"""The frontend guide's read-your-write snippet (graphql-ws + fetch) runs as written.

It is taken from docs/frontend.md (moved there from the README; the file
keeps its name) between `<!-- snippet:read-your-write -->` and
`<!-- /snippet:read-your-write -->`; only its `import … from 'graphql-ws'`
line is rewritten, to the copy of graphql-ws the server vendors. It must
reach its visible branch.

Where it runs: a real page of the server, /board, with its real
Content-Security-Policy, whose module script (/assets/board.js) the browser's
router answers with the snippet instead. A page made up by the router would
not do: it has no address, so Chromium's Local Network Access checks refuse
its WebSocket to 127.0.0.1.
"""
import re

from playwright.sync_api import TimeoutError as PlaywrightTimeout

from conftest import CSP, DESKTOP, ROOT

BEGIN, END = "<!-- snippet:read-your-write -->", "<!-- /snippet:read-your-write -->"
IMPORT = re.compile(r"^import \{ createClient \} from 'graphql-ws';", re.M)
VENDORED = "/assets/vendor/graphql-ws@6.4.2/client.js"
PAGE, MODULE = "/board", "/assets/board.js"


def readme_snippet():
    text = (ROOT / "docs" / "frontend.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1, "the snippet markers must appear once each"
    block = text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip()
    assert block.startswith("```js\n") and block.endswith("```"), block[:40]
    return block[len("```js\n") : -len("```")]


def test_the_readme_snippet_runs_as_written(new_context, server):
    snippet = readme_snippet()
    assert len(IMPORT.findall(snippet)) == 1, "the snippet imports createClient from 'graphql-ws' once"
    module = IMPORT.sub(f"import {{ createClient }} from '{VENDORED}';", snippet)
    assert module.replace(VENDORED, "graphql-ws") == snippet  # nothing else changed

    context, guard = new_context(DESKTOP)
    page = context.new_page()
    page.route(f"{server.url}{MODULE}", lambda route: route.fulfill(status=200, content_type="text/javascript", body=module))
    logged = []
    page.on("console", lambda m: logged.append((m.type, m.text)))

    visible = re.compile(r"^order ([0-9a-f-]{36}): visible, PLACED, \d+ cents$")
    try:
        with page.expect_console_message(lambda m: visible.match(m.text) is not None, timeout=15000) as message:
            response = page.goto(PAGE)
            assert response.headers["content-security-policy"] == CSP
    except PlaywrightTimeout:
        raise AssertionError(f"the snippet never logged 'visible'; console: {logged}, page errors: {guard.page_errors}") from None
    order_id = visible.match(message.value.text).group(1)

    texts = [text for _, text in logged]
    assert texts.index(f"order {order_id}: pending") < texts.index(message.value.text)
    assert not [t for t in texts if "still pending" in t]
    assert not [(kind, text) for kind, text in logged if kind == "error"], logged
    # It really went to the server: the vendored client, the mutation, the WebSocket.
    urls = [r.url for r in guard.requests]
    assert f"{server.url}{VENDORED}" in urls
    assert any(u == f"{server.url}/graphql" for u in urls)
    assert any(ws.url.endswith("/graphql/ws") for ws in guard.websockets)
    assert server.data("query($id: ID!) { order(id: $id) { id } }", {"id": order_id})["order"]["id"] == order_id
