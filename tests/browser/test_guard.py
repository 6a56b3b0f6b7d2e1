"""The guard the other tests rely on really catches what it must."""
from conftest import DESKTOP, Guard


def test_the_guard_reports_other_origins_csp_violations_and_page_errors(browser, server):
    context = browser.new_context(viewport=DESKTOP, base_url=server.url)
    guard = Guard(server.url)
    guard.attach(context)
    try:
        page = context.new_page()
        page.goto("/board")
        assert guard.problems() == []
        # A request to another origin is refused and reported.
        page.evaluate("() => fetch('http://offsite.invalid/x').catch(() => null)")
        # An inline script is refused by the page's CSP and reported.
        page.evaluate("() => { const s = document.createElement('script'); s.textContent = 'window.__ran = true'; document.head.append(s); }")
        page.wait_for_timeout(200)
        assert page.evaluate("() => window.__ran === undefined")
        # An uncaught error is reported.
        page.evaluate("() => { setTimeout(() => { throw new Error('boom from the guard test'); }, 0); }")
        page.wait_for_timeout(200)
        problems = "\n".join(guard.problems())
        assert "http://offsite.invalid/x" in problems
        assert "script-src" in problems
        assert "boom from the guard test" in problems
    finally:
        context.close()
