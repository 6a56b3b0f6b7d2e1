"""The board reconnects by itself after the server restarts, and a pending order resolves.

An order stays pending across the restart for a real reason: the first server
runs with --role api (no projectors), so the write commits but nothing
projects it. The server is then killed (SIGKILL) and started again on the
same port and database with the default role (all); the board has to
reconnect on its own and re-check the pending order with writeVisible.
"""
import time

from board_page import connects, open_board, order, place_order, visibility_seen, wait_connected, wait_visible
from conftest import DESKTOP


def wait_reconnected(page, before, timeout=30000):
    page.wait_for_function(
        "(n) => { const s = document.querySelector('[data-testid=connection-status]'); return s.dataset.state === 'connected' && Number(s.dataset.connects) > n; }",
        arg=before,
        timeout=timeout,
    )


def test_board_reconnects_after_restarts_and_resolves_a_pending_order(new_context, server):
    try:
        context, _ = new_context(DESKTOP)
        page = open_board(context)
        before = connects(page)

        # 1. Crash the server; bring it back without projectors.
        server.kill()
        page.wait_for_selector("[data-testid=connection-status][data-state=closed]", timeout=10000)
        server.start(role="api")
        wait_reconnected(page, before)

        # 2. Place an order: committed, never projected by this server.
        order_id = place_order(page, customer=0, product=1, quantity=1)
        placed_at = time.monotonic()
        page.wait_for_timeout(3000)
        row = order(page, order_id)
        assert row.get_attribute("data-visibility") == "pending"
        assert page.get_attribute("[data-testid=orders-meta]", "data-pending") == "1"

        # 3. Crash it again and start it with the projectors.
        before = connects(page)
        server.kill()
        page.wait_for_selector("[data-testid=connection-status][data-state=closed]", timeout=10000)
        server.start(role="all")
        wait_reconnected(page, before)

        # 4. The board re-checked the pending order on reconnect: it turns visible.
        ms = wait_visible(page, order_id, timeout=30000)
        assert visibility_seen(page, order_id) == ["pending", "visible"]
        assert ms >= 3000
        assert ms <= (time.monotonic() - placed_at) * 1000 + 1000
        assert page.get_attribute("[data-testid=orders-meta]", "data-pending") == "0"
        status = server.data("query($id: ID!) { order(id: $id) { status } }", {"id": order_id})["order"]["status"]
        assert status == "PLACED"
        # And the live list works again: a new order goes pending -> visible as usual.
        again = place_order(page, customer=1, product=0)
        wait_visible(page, again)
        wait_connected(page)
    finally:
        # Whatever happened above, the next tests get a server with its projectors.
        if server.role != "all":
            server.stop()
            server.start(role="all")
