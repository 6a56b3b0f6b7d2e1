"""The board's search box and filters: orders(search:, filter:, orderBy:) with totalCount."""
import json

from board_page import ORDER, no_horizontal_scroll, open_board, order, place_order, wait_visible
from conftest import DESKTOP, PHONE

SEARCH = "[data-testid=search-input]"
STATUS = "[data-testid=search-status]"
# The board's own document, asked of the server directly to compare answers.
SERVER_ORDERS = """query($search: String, $filter: OrderFilter) {
  orders(first: 20, search: $search, filter: $filter, orderBy: [{field: PLACED_AT, direction: DESC}]) {
    totalCount nodes { id customerName status lines { title } }
  }
}"""


def board_reads(request):
    """The variables of a board's orders read, or None for any other request."""
    if request.method != "POST" or not request.url.endswith("/graphql"):
        return None
    body = json.loads(request.post_data or "null") or {}
    if "BoardOrders" not in body.get("query", ""):
        return None
    return body.get("variables") or {}


def wait_applied(page, search="", status="", placed_from="", placed_to=""):
    """Waits until the list shows the answer to exactly these criteria."""
    page.wait_for_function(
        """([search, status, from, to]) => {
            const d = document.querySelector('[data-testid=order-list]').dataset;
            return d.search === search && d.status === status && d.placedFrom === from && d.placedTo === to;
        }""",
        arg=[search, status, placed_from, placed_to],
    )


def shown_ids(page):
    return page.eval_on_selector_all(f"{ORDER}[data-listed=true]", "els => els.map((e) => e.dataset.orderId)")


def shown_count(page):
    page.wait_for_selector(f"{STATUS}[data-state=counted]")
    return int(page.get_attribute(STATUS, "data-count"))


def option_index(page, which, text):
    """The position of the first option of the `which` select whose label holds `text`."""
    return page.eval_on_selector_all(
        f"[data-testid={which}-select] option", "(els, t) => els.findIndex((e) => e.textContent.includes(t))", text
    )


def search(page, text):
    page.fill(SEARCH, text)
    wait_applied(page, search=text)


def server_orders(server, search=None, filter=None):
    return server.data(SERVER_ORDERS, {"search": search, "filter": filter})["orders"]


def test_typing_finds_an_order_by_customer_name_product_title_and_id_prefix(new_context, server):
    context, _ = new_context(DESKTOP)
    page = open_board(context)

    search(page, "Hopper")
    expected = server_orders(server, "Hopper")
    assert expected["nodes"], "the seed has an order of Grace Hopper's"
    assert shown_ids(page) == [o["id"] for o in expected["nodes"]]
    assert all("Grace Hopper" in t for t in page.locator(f"{ORDER} [data-testid=order-meta]").all_inner_texts())

    search(page, "gooseneck kett")  # the last word typed matches as a prefix
    expected = server_orders(server, "gooseneck kett")
    assert expected["nodes"], "the seed has an order with a Gooseneck kettle"
    assert shown_ids(page) == [o["id"] for o in expected["nodes"]]
    assert all("Gooseneck kettle" in t for t in page.locator(f"{ORDER} [data-testid=order-lines]").all_inner_texts())

    # The id's beginning, cut mid-word ("0193b2c1-5e2f-7a"): its words, the last as a prefix.
    target = expected["nodes"][0]["id"]
    search(page, target[:16])
    assert target in shown_ids(page)
    assert shown_ids(page) == [o["id"] for o in server_orders(server, target[:16])["nodes"]]
    assert order(page, target).locator("[data-testid=order-id]").get_attribute("title") == target

    # The short id the board shows ("#5e2f7a0c9d41"), typed as shown, finds its order and only it.
    shown = order(page, target).locator("[data-testid=order-id]").inner_text()
    assert shown.startswith("#") and target.endswith(shown[1:]), shown
    search(page, shown)
    assert shown_ids(page) == [target]
    search(page, shown[:7])  # half of it, as typed so far: the prefix still finds it
    assert target in shown_ids(page)

    # Clearing the box shows the whole board again, without a count.
    search(page, "")
    assert page.get_attribute(STATUS, "data-state") == "idle"
    assert len(shown_ids(page)) == len(server_orders(server)["nodes"])


def test_typing_fast_sends_one_read_after_the_pause(new_context, server):
    context, _ = new_context(DESKTOP)
    page = open_board(context)
    reads = []
    page.on("request", lambda r: reads.append(v) if (v := board_reads(r)) is not None else None)
    page.click(SEARCH)
    with page.expect_response(lambda r: (board_reads(r.request) or {}).get("search") == "Lovelace"):
        page.keyboard.type("Lovelace", delay=15)  # 8 keystrokes, well inside one 250 ms pause
    wait_applied(page, search="Lovelace")
    searched = [v["search"] for v in reads if v.get("search")]
    # Without the debounce: one read per keystroke (L, Lo, Lov, …).
    assert searched[-1] == "Lovelace"
    assert len(searched) <= 2, searched
    assert all(v["withCount"] for v in reads if v.get("search"))
    assert shown_count(page) == server_orders(server, "Lovelace")["totalCount"]


def test_a_stale_answer_never_overwrites_a_newer_one(new_context, server):
    context, _ = new_context(DESKTOP)
    page = open_board(context)
    held = []

    def hold(route, request):
        if (board_reads(request) or {}).get("search") == "Turing":
            held.append(route)  # answered only once the newer search is shown
        else:
            route.fallback()

    page.route("**/graphql", hold)
    with page.expect_request(lambda r: (board_reads(r) or {}).get("search") == "Turing"):
        page.fill(SEARCH, "Turing")
    search(page, "Hopper")
    hopper = shown_ids(page)
    assert hopper and held
    # Counted from here: a read of the page's start overtaken by a later one
    # (the WebSocket's connect repeats them) may have been dropped already.
    dropped = int(page.get_attribute("[data-testid=order-list]", "data-dropped") or 0)
    with page.expect_response(lambda r: (board_reads(r.request) or {}).get("search") == "Turing"):
        for route in held:
            route.fallback()
    page.unroute("**/graphql", hold)
    page.wait_for_function(
        "n => Number(document.querySelector('[data-testid=order-list]').dataset.dropped ?? 0) > n", arg=dropped
    )
    assert page.get_attribute("[data-testid=order-list]", "data-search") == "Hopper"
    assert shown_ids(page) == hopper
    assert page.input_value(SEARCH) == "Hopper"


def test_the_filters_narrow_the_list_and_the_count_matches(new_context, server):
    context, _ = new_context(DESKTOP)
    page = open_board(context)
    shipped = place_order(page, customer=option_index(page, "customer", "Turing"), product=3)
    wait_visible(page, shipped)
    order(page, shipped).locator("[data-testid=ship-order]").click()
    page.wait_for_selector(f'{ORDER}[data-order-id="{shipped}"][data-status=SHIPPED]')

    page.select_option("[data-testid=status-filter]", "SHIPPED")
    wait_applied(page, status="SHIPPED")
    expected = server_orders(server, filter={"status": {"eq": "SHIPPED"}})
    assert shipped in shown_ids(page)
    assert set(page.eval_on_selector_all(ORDER, "els => els.map((e) => e.dataset.status)")) == {"SHIPPED"}
    assert shown_count(page) == expected["totalCount"]
    assert shown_ids(page) == [o["id"] for o in expected["nodes"]]

    # A search and a filter together: the shipped order's customer, shipped only.
    search_text = "Turing"
    page.fill(SEARCH, search_text)
    wait_applied(page, search=search_text, status="SHIPPED")
    expected = server_orders(server, search_text, {"status": {"eq": "SHIPPED"}})
    assert shipped in shown_ids(page)
    assert shown_count(page) == expected["totalCount"]
    assert set(page.eval_on_selector_all(ORDER, "els => els.map((e) => e.dataset.status)")) == {"SHIPPED"}

    # The placed-at range, in the browser's own days: today holds the order, tomorrow nothing.
    today, tomorrow = page.evaluate(
        """() => [0, 1].map((d) => { const t = new Date(); t.setDate(t.getDate() + d);
             return `${t.getFullYear()}-${String(t.getMonth() + 1).padStart(2, '0')}-${String(t.getDate()).padStart(2, '0')}`; })"""
    )
    page.fill("[data-testid=placed-from]", today)
    page.fill("[data-testid=placed-to]", today)
    wait_applied(page, search=search_text, status="SHIPPED", placed_from=today, placed_to=today)
    assert shipped in shown_ids(page)
    page.fill("[data-testid=placed-from]", tomorrow)
    page.fill("[data-testid=placed-to]", "")
    wait_applied(page, search=search_text, status="SHIPPED", placed_from=tomorrow)
    assert shown_ids(page) == []
    assert shown_count(page) == 0
    assert page.locator("[data-testid=orders-empty]").inner_text() == "No orders match the search and filters."


def test_your_own_new_order_appears_in_the_active_search(new_context, server):
    context, _ = new_context(DESKTOP)
    page = open_board(context)
    search(page, "Dijkstra")
    before = shown_count(page)
    order_id = place_order(page, customer=option_index(page, "customer", "Dijkstra"), product=1)
    wait_visible(page, order_id)
    # Read at the order's token under the search: listed by the server, counted.
    page.wait_for_selector(f'{ORDER}[data-order-id="{order_id}"][data-listed=true]')
    page.wait_for_selector(f"{STATUS}[data-count='{before + 1}']")
    assert page.get_attribute("[data-testid=order-list]", "data-search") == "Dijkstra"
    assert shown_ids(page)[0] == order_id


def test_a_hostile_search_shows_a_clear_message(new_context, server):
    context, _ = new_context(DESKTOP)
    page = open_board(context)
    huge = "x" * 10000
    expected = server.graphql(SERVER_ORDERS, {"search": huge})["errors"][0]
    assert expected["extensions"]["code"] == "VALIDATION"
    page.fill(SEARCH, huge)
    page.wait_for_selector(f"{STATUS}[data-state=error]")
    assert page.locator("[data-testid=search-error]").inner_text() == expected["message"]
    assert "at most 200 characters" in expected["message"]
    assert page.locator(f"{STATUS} code").inner_text() == "VALIDATION"
    # Query syntax of either store is only words here: no error, no hang.
    search(page, 'NEAR(" OR -- \'; DROP "unclosed*')
    assert page.get_attribute(STATUS, "data-state") == "counted"
    # Clearing it brings the board back.
    search(page, "")
    assert page.get_attribute(STATUS, "data-state") == "idle"
    assert page.locator("[data-testid=connection-status]").get_attribute("data-state") == "connected"


def test_the_phone_layout_still_fits_with_a_search(new_context, server):
    context, _ = new_context(PHONE)
    page = open_board(context)
    page.select_option("[data-testid=status-filter]", "PLACED")
    page.fill(SEARCH, "espresso cups " + "y" * 150)
    page.wait_for_selector(f"{STATUS}[data-state=counted], {STATUS}[data-state=error]")
    ok, sizes = no_horizontal_scroll(page)
    assert ok, f"scrollWidth {sizes[0]} > clientWidth {sizes[1]} at 375 px"
    page.fill(SEARCH, "z" * 10000)
    page.wait_for_selector(f"{STATUS}[data-state=error]")
    ok, sizes = no_horizontal_scroll(page)
    assert ok, f"scrollWidth {sizes[0]} > clientWidth {sizes[1]} at 375 px with the error shown"
    box = page.locator(SEARCH).bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
