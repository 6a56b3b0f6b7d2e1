"""Fixtures of the browser tests: headless Chromium (Debian's), one context per
test with a network guard, the running twofold server in open development
mode (see run.sh), and a second one that requires tokens (keyed_server)."""
import os
import pathlib
import shutil
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import sync_playwright

from seed import seed
from twofold_server import Server

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "target" / "screenshots"
DOCS = ROOT / "docs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The policy the pages must work under (src/http/pages.rs sends it).
CSP = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}

# Runs in every page before its own scripts (not subject to the page's CSP).
CSP_RECORDER = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push({ directive: e.violatedDirective, blocked: e.blockedURI, source: e.sourceFile, line: e.lineNumber, sample: e.sample });
});
"""


class Guard:
    """Fails the test on a request to another origin, a CSP violation or an uncaught page error."""

    def __init__(self, origin):
        parts = urlsplit(origin)
        self.host, self.port = parts.hostname, parts.port
        self.offsite = []
        self.page_errors = []
        self.csp = []
        self.console = []
        self.websockets = []
        self.frames_sent = []
        self.frames_received = []
        self.requests = []
        self.allowed_csp = []
        self.pages = []

    def local(self, url):
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about"):
            return True
        return parts.scheme in ("http", "ws") and parts.hostname == self.host and parts.port == self.port

    def attach(self, context):
        context.route("**/*", self._route)
        context.on("request", self._on_request)
        context.on("page", self._on_page)
        context.add_init_script(CSP_RECORDER)

    def _route(self, route, request):
        if self.local(request.url):
            route.continue_()
        else:
            self.offsite.append(request.url)
            route.abort("blockedbyclient")

    def _on_request(self, request):
        self.requests.append(request)
        if not self.local(request.url):
            self.offsite.append(request.url)

    def _on_page(self, page):
        self.pages.append(page)
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("console", self._on_console)
        page.on("websocket", self._on_websocket)

    def _on_console(self, message):
        self.console.append(f"{message.type}: {message.text}")
        if "Content Security Policy" in message.text:
            self.csp.append({"console": message.text})

    def _on_websocket(self, ws):
        self.websockets.append(ws)
        if not self.local(ws.url):
            self.offsite.append(ws.url)
        ws.on("framesent", lambda payload: self.frames_sent.append((ws.url, payload)))
        ws.on("framereceived", lambda payload: self.frames_received.append((ws.url, payload)))

    def allow_csp(self, predicate):
        """Lets violations matching predicate(violation) through (the caller documents why)."""
        self.allowed_csp.append(predicate)

    def collect(self):
        for page in self.pages:
            if not page.is_closed():
                try:
                    self.csp.extend(page.evaluate("window.__csp || []"))
                    page.evaluate("window.__csp = []")
                except Exception:  # a page mid-navigation has no recorder to read
                    pass

    def problems(self):
        self.collect()
        refused = [v for v in self.csp if not any(allow(v) for allow in self.allowed_csp)]
        out = []
        if self.offsite:
            out.append(f"requests outside the server: {sorted(set(self.offsite))}")
        if refused:
            out.append(f"Content-Security-Policy violations: {refused}")
        if self.page_errors:
            out.append(f"uncaught errors in the page: {self.page_errors}")
        return out

    def assert_clean(self):
        problems = self.problems()
        assert not problems, "\n".join(problems)


@pytest.fixture(scope="session")
def server():
    return Server.from_env()


@pytest.fixture(autouse=True)
def shared_server_stays_whole(request):
    """After each test that used the shared server: it runs again with its
    projectors (a test that restarted it with --role api and failed half-way
    must not leave the next tests without a runner), and /readyz is 200 —
    a stalled projection fails the test that left it, by name and cause."""
    yield
    if "server" not in request.fixturenames:
        return
    server = request.getfixturevalue("server")
    if server.pid() is None or server.role != "all":
        server.stop()
        server.start(role="all")
    server.wait_ready(timeout=10)


@pytest.fixture(scope="session")
def keyed_server():
    """A second server that requires bearer JWTs (TWOFOLD_JWT_SECRET), on its
    own port and database, seeded like the first through a staff token.
    `.staff` is that token, `.seeded` the ids seed() returned, `.mint()`
    mints more with `twofold token`."""
    keyed = Server.keyed()
    keyed.start()
    try:
        keyed.staff = keyed.mint("staff", ttl="2h")
        keyed.seeded = seed(keyed, token=keyed.staff)
        yield keyed
    finally:
        keyed.stop()


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def new_context(browser, server):
    """new_context(viewport, target=server) -> (context, guard), on `target`'s
    origin; every context is checked when the test ends."""
    made = []

    def make(viewport=DESKTOP, target=None):
        target = target or server
        context = browser.new_context(viewport=viewport, base_url=target.url)
        context.set_default_timeout(15000)
        guard = Guard(target.url)
        guard.attach(context)
        made.append((context, guard))
        return context, guard

    yield make
    problems = []
    for context, guard in made:
        problems += guard.problems()
        context.close()
    assert not problems, "\n".join(problems)


def screenshot(page, name, docs_name=None):
    """Saves target/screenshots/<name>.png and, with docs_name and
    TWOFOLD_UPDATE_DOCS=1, a copy as docs/<docs_name> (the committed pictures
    change only when asked to)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    if docs_name and os.environ.get("TWOFOLD_UPDATE_DOCS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS / docs_name)
    return path
