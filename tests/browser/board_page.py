"""Drives the order board at /board (by its data-testid attributes)."""
from conftest import CSP

ORDER = "[data-testid=order]"

RECORD_VISIBILITY = """
() => {
  window.__visibility = {};
  const note = (li) => {
    const id = li.dataset.orderId, v = li.dataset.visibility;
    if (!id || !v) return;
    const seen = (window.__visibility[id] ||= []);
    if (seen[seen.length - 1] !== v) seen.push(v);
  };
  document.querySelectorAll('[data-testid=order]').forEach(note);
  new MutationObserver((mutations) => {
    for (const m of mutations) for (const n of m.addedNodes) if (n.nodeType === 1 && n.matches('[data-testid=order]')) note(n);
  }).observe(document.querySelector('[data-testid=order-list]'), { childList: true });
}
"""

# The order the click added: one this page placed (its visibility is pending
# or visible; an order the list brought has an empty one) and did not know
# before. Not "any order it did not know": a new page's list may arrive after
# `known` was taken.
NEW_ORDER = """
(known) => {
  for (const li of document.querySelectorAll('[data-testid=order]:is([data-visibility=pending], [data-visibility=visible])')) {
    if (!known.includes(li.dataset.orderId)) return li.dataset.orderId;
  }
  return null;
}
"""


def open_board(context):
    page = context.new_page()
    response = page.goto("/board")
    assert response.status == 200
    assert response.headers["content-security-policy"] == CSP
    wait_connected(page)
    page.wait_for_function("() => document.querySelectorAll('[data-testid=customer-select] option[value]:not([value=\"\"])').length > 0")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=product-select] option[value]:not([value=\"\"])').length > 0")
    page.evaluate(RECORD_VISIBILITY)
    return page


def wait_connected(page, timeout=15000):
    page.wait_for_selector("[data-testid=connection-status][data-state=connected]", timeout=timeout)


def connects(page):
    return int(page.get_attribute("[data-testid=connection-status]", "data-connects") or "0")


def order(page, order_id):
    return page.locator(f'{ORDER}[data-order-id="{order_id}"]')


def place_order(page, customer=0, product=0, quantity=1):
    """Picks a customer (None: leave it, as for a customer token) and a product
    by position, clicks Place order; returns the new order's id."""
    known = page.eval_on_selector_all(ORDER, "els => els.map((e) => e.dataset.orderId)")
    if customer is not None:
        page.select_option("[data-testid=customer-select]", index=customer)
    page.select_option("[data-testid=product-select]", index=product)
    page.fill("[data-testid=quantity-input]", str(quantity))
    page.click("[data-testid=place-order]")
    return page.wait_for_function(NEW_ORDER, arg=known).json_value()


def wait_visible(page, order_id, timeout=20000):
    """Waits until the order is visible; returns its click-to-visible milliseconds."""
    selector = f'{ORDER}[data-order-id="{order_id}"][data-visibility=visible]'
    try:
        page.wait_for_selector(selector, timeout=timeout)
    except Exception as e:
        raise AssertionError(f"order {order_id} never turned visible: {board_diagnostics(page, order_id)}") from e
    unanswered = page.get_attribute(selector, "data-visibility-unanswered")
    if unanswered not in (None, "0"):
        # The board recovered by asking again; say so, so a server that
        # drops answers shows up in the log even while the tests pass.
        print(f"\nnote: order {order_id} turned visible after {unanswered} unanswered writeVisible ask(s): {board_diagnostics(page, order_id)}")
    return int(page.get_attribute(selector, "data-click-to-visible-ms"))


def board_diagnostics(page, order_id):
    """What the board shows about an order and its connection, and what the
    server says of its projections: the message of a failed wait."""
    shown = page.evaluate(
        """(id) => ({
            order: Object.assign({}, document.querySelector(`[data-testid=order][data-order-id="${id}"]`)?.dataset ?? {}),
            connection: Object.assign({ text: document.querySelector('[data-testid=connection-status]')?.textContent }, document.querySelector('[data-testid=connection-status]')?.dataset ?? {}),
            errors: [...document.querySelectorAll('[data-testid=error]')].map((e) => e.textContent),
        })""",
        order_id,
    )
    try:
        projections = page.evaluate(
            """() => fetch('/graphql', { method: 'POST', headers: { 'content-type': 'application/json' },
                 body: JSON.stringify({ query: '{ projections { name status checkpoint lastError } }' }) }).then((r) => r.text())"""
        )
    except Exception as e:  # the page may be gone
        projections = f"(could not ask: {e})"
    return f"board {shown}; server projections {projections}"


def visibility_seen(page, order_id):
    return page.evaluate("(id) => (window.__visibility || {})[id] || []", order_id)


def no_horizontal_scroll(page):
    width, client = page.evaluate("() => [document.scrollingElement.scrollWidth, document.scrollingElement.clientWidth]")
    return width <= client, (width, client)


def use_token(page, token):
    """Pastes a token into the board's token field and presses Use."""
    page.fill("[data-testid=token-input]", token)
    page.click("[data-testid=token-save]")


def wait_viewer(page, role, timeout=15000):
    """Waits until the board says it acts as `role` (viewer { role }: CUSTOMER, STAFF, ADMIN)."""
    page.wait_for_selector(f"[data-testid=viewer][data-auth=signed-in][data-role={role}]", timeout=timeout)


def listed_ids(page):
    """Ids of the orders the server's list (orders(first: 20)) returned, as shown."""
    return page.eval_on_selector_all(f"{ORDER}[data-listed=true]", "els => els.map((e) => e.dataset.orderId)")
