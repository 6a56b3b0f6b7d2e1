// The live order board: plain ES module, no build step. GraphQL over HTTP for
// queries and commands, graphql-ws (vendored ES module) for subscriptions.
import { createClient } from '/assets/vendor/graphql-ws@6.4.2/client.js';

const TOKEN_KEY = 'twofold.board.token';
/** The board shows order summaries, so an order is visible once this projection has it. */
const VISIBLE_IN = ['order_summary'];
/** How long one writeVisible waits before answering visible: false (the server caps it). */
const WAIT_MS = 10000;
/** A writeVisible that failed is tried again after this long (and on every reconnect). */
const RETRY_FAILED_MS = 3000;
/** A writeVisible that timed out (visible: false) is asked again after this pause. */
const RECHECK_MS = 250;
/** A writeVisible with no answer this long after it was asked (the server
 * answers by WAIT_MS at the latest) is presumed lost on the way, say by a
 * proxy or a socket that died quietly, and asked again. */
const UNANSWERED_MS = WAIT_MS + 5000;
/** A client ended by a fatal close code is replaced after this long. */
const RESTART_AFTER_FATAL_MS = 5000;
const DEMO_CARRIER = 'Demo Post';
const MAX_ERRORS = 30;
/** The server closes a WebSocket with this code when its token is bad or has expired. */
const CLOSE_FORBIDDEN = 4403;

const VIEWER_QUERY = `query BoardViewer { viewer { sub role customerId } }`;
/** How long the search box waits after the last keystroke before it asks the server. */
const SEARCH_DEBOUNCE_MS = 250;
// totalCount reads every match, so it is asked for only while a search or a
// filter is active (the whole board needs no count).
// Newest first under a search too (PLACED_AT serves the status and placedAt
// filters), so that a board's order does not jump around as words are typed.
const ORDERS_QUERY = `query BoardOrders($consistentWith: Token, $search: String, $filter: OrderFilter, $withCount: Boolean!) {
  orders(first: 20, search: $search, filter: $filter, orderBy: [{ field: PLACED_AT, direction: DESC }], consistentWith: $consistentWith) {
    totalCount @include(if: $withCount)
    nodes { id customerName totalCents status placedAt carrier trackingNumber lines { title quantity } }
  }
}`;
const CHOICES_QUERY = `query BoardChoices {
  customers(first: 100) { nodes { id name email } }
  products(first: 100) { nodes { id title sku priceCents } }
}`;
const PLACE_ORDER = `mutation BoardPlaceOrder($input: PlaceOrderInput!) { placeOrder(input: $input) { id token } }`;
const CANCEL_ORDER = `mutation BoardCancelOrder($input: CancelOrderInput!) { cancelOrder(input: $input) { token } }`;
const SHIP_ORDER = `mutation BoardShipOrder($input: ShipOrderInput!) { shipOrder(input: $input) { token } }`;
const PROJECTION_UPDATED = `subscription BoardUpdates { projectionUpdated(projections: ["order_summary"]) { projection token } }`;
const WRITE_VISIBLE = `subscription BoardWriteVisible($token: Token!, $projections: [String!], $timeoutMs: Int) {
  writeVisible(token: $token, projections: $projections, timeoutMs: $timeoutMs) { token projections visible }
}`;

const $ = (id) => document.getElementById(id);
const ui = {
  conn: $('conn'),
  placeForm: $('place-form'),
  customer: $('customer'),
  product: $('product'),
  quantity: $('quantity'),
  place: $('place'),
  tokenForm: $('token-form'),
  token: $('token'),
  tokenClear: $('token-clear'),
  tokenState: document.querySelector('[data-testid="token-state"]'),
  viewer: $('viewer'),
  notice: $('auth-notice'),
  noticeTitle: document.querySelector('[data-testid="auth-notice-title"]'),
  noticeMessage: document.querySelector('[data-testid="auth-notice-message"]'),
  noticeCode: document.querySelector('[data-testid="auth-notice-code"]'),
  noticeHelp: document.querySelector('[data-testid="auth-notice-help"]'),
  errorsPanel: document.querySelector('[data-testid="errors"]'),
  errors: $('errors'),
  errorsClear: $('errors-clear'),
  orders: $('orders'),
  ordersEmpty: $('orders-empty'),
  ordersMeta: $('orders-meta'),
  searchForm: $('search-form'),
  search: $('search'),
  statusFilter: $('status-filter'),
  placedFrom: $('placed-from'),
  placedTo: $('placed-to'),
  searchStatus: $('search-status'),
};

const state = {
  token: readToken(),
  /** Who the token acts as (viewer { sub role customerId }), once the server said. */
  viewer: null,
  /** 'unknown' (not asked yet, or the server was unreachable), 'signed-in',
   * 'anonymous' (no token, and the server requires one) or 'refused'. */
  auth: 'unknown',
  /** Why the token was refused: { message, code }. */
  authError: null,
  /** Newest orders as the order_summary view last answered. */
  orders: [],
  ordersLoaded: false,
  /** The search and filters the shown orders answer (as last applied). */
  shownCriteria: null,
  /** totalCount of the shown answer (null without a search or filter). */
  totalCount: null,
  /** Why the server refused the search or filters: { message, code }, or null. */
  searchError: null,
  /** Orders placed from this page: id -> { id, token, clickedAt, visibility, ms, ... }. */
  placed: new Map(),
  /** Order ids with a cancel or ship in flight. */
  busy: new Set(),
  customers: [],
  products: [],
};

// ---------------------------------------------------------------- errors

/** One GraphQL (or transport) error as the board shows it. */
class BoardError extends Error {
  constructor(errors) {
    super(errors.map((e) => e.message).join('; '));
    this.errors = errors;
  }
}

function fromGraphQLErrors(errors) {
  return errors.map((e) => ({ message: String(e.message ?? e), code: e.extensions?.code ?? null }));
}

/** Normalises whatever a fetch or a subscription sink reported. */
function toErrors(err) {
  if (err instanceof BoardError) return err.errors;
  if (Array.isArray(err)) return fromGraphQLErrors(err);
  if (err && typeof err === 'object' && 'code' in err && 'reason' in err && 'wasClean' in err) {
    return [{ message: `WebSocket closed: ${err.reason || 'no reason given'}`, code: `CLOSE_${err.code}` }];
  }
  if (err instanceof Event) return [{ message: 'WebSocket error', code: 'WEBSOCKET' }];
  return [{ message: err?.message ? String(err.message) : String(err), code: null }];
}

/** A WebSocket closed because its token is bad or expired (the notice says so). */
function isForbiddenClose(err) {
  return Boolean(err && typeof err === 'object' && err.code === CLOSE_FORBIDDEN && 'reason' in err);
}

/** Shows errors in the errors panel; nothing is ever dropped silently. */
function showErrors(context, err) {
  const errors = toErrors(err);
  for (const e of errors) {
    const li = document.createElement('li');
    li.dataset.testid = 'error';
    if (e.code) li.dataset.code = e.code;
    const when = document.createElement('span');
    when.className = 'error-when';
    when.textContent = new Date().toLocaleTimeString();
    const what = document.createElement('strong');
    what.textContent = `${context}: `;
    const message = document.createElement('span');
    message.dataset.testid = 'error-message';
    message.textContent = e.message;
    li.append(when, what, message);
    if (e.code) {
      const code = document.createElement('code');
      code.className = 'error-code';
      code.dataset.testid = 'error-code';
      code.textContent = e.code;
      li.append(code);
    }
    ui.errors.prepend(li);
    console.error(`[board] ${context}: ${e.message}${e.code ? ` (${e.code})` : ''}`);
  }
  while (ui.errors.children.length > MAX_ERRORS) ui.errors.lastElementChild.remove();
  ui.errorsPanel.hidden = ui.errors.children.length === 0;
}

ui.errorsClear.addEventListener('click', () => {
  ui.errors.replaceChildren();
  ui.errorsPanel.hidden = true;
});

// ---------------------------------------------------------------- HTTP

/** Every request of one token belongs to one session; a new token starts a new one. */
let session = 0;

async function gql(query, variables = {}) {
  const mine = session;
  const headers = {
    'content-type': 'application/json',
    accept: 'application/graphql-response+json, application/json',
  };
  if (state.token) headers.authorization = `Bearer ${state.token}`;
  let response;
  try {
    response = await fetch('/graphql', { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
  } catch (e) {
    throw new BoardError([{ message: `the server cannot be reached (${e.message})`, code: 'NETWORK' }]);
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new BoardError([{ message: `HTTP ${response.status}: the answer is not JSON`, code: `HTTP_${response.status}` }]);
  }
  if (Array.isArray(body.errors) && body.errors.length > 0) {
    const errors = fromGraphQLErrors(body.errors);
    // 401: the token itself was refused (malformed, expired, wrongly signed).
    if (response.status === 401 && mine === session) tokenRefused(errors[0]);
    throw new BoardError(errors);
  }
  if (!response.ok || !body.data) {
    throw new BoardError([{ message: `HTTP ${response.status} without data`, code: `HTTP_${response.status}` }]);
  }
  return body.data;
}

/** A command id, so that a retried command is applied once (works outside secure contexts too). */
function commandId() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// ---------------------------------------------------------------- reads

let ordersSeq = 0;
let ordersApplied = 0;

/** The search and filters as the form holds them now. */
function criteria() {
  return {
    search: ui.search.value.trim() === '' ? null : ui.search.value,
    status: ui.statusFilter.value || null,
    from: ui.placedFrom.value || null,
    to: ui.placedTo.value || null,
  };
}

function isActive(c) {
  return Boolean(c && (c.search || c.status || c.from || c.to));
}

/** Local midnight of a `YYYY-MM-DD` day (what a date input holds), plus `days`. */
function dayStart(day, days = 0) {
  const [y, m, d] = day.split('-').map(Number);
  return new Date(y, m - 1, d + days).toISOString();
}

/** The `orders` arguments for the criteria: the "to" day is included whole. */
function ordersVariables(c) {
  const filter = {};
  if (c.status) filter.status = { eq: c.status };
  if (c.from || c.to) {
    filter.placedAt = {};
    if (c.from) filter.placedAt.gte = dayStart(c.from);
    if (c.to) filter.placedAt.lt = dayStart(c.to, 1);
  }
  return { search: c.search, filter: Object.keys(filter).length ? filter : null, withCount: isActive(c) };
}

/** An answer (or a failure) to an earlier read, overtaken by a newer one
 * already shown: dropped, and counted (`data-dropped`, for the tests). */
function overtaken() {
  ui.orders.dataset.dropped = String(Number(ui.orders.dataset.dropped ?? 0) + 1);
}

/** Re-reads the newest orders under the form's search and filters; an
 * answer older than one already shown is dropped, so a slow answer to an
 * earlier keystroke never overwrites a newer one. */
async function fetchOrders(consistentWith = null) {
  const seq = ++ordersSeq;
  const mine = session;
  const asked = criteria();
  try {
    const data = await gql(ORDERS_QUERY, { consistentWith, ...ordersVariables(asked) });
    if (mine !== session) return;
    if (seq < ordersApplied) {
      overtaken();
      return;
    }
    ordersApplied = seq;
    state.orders = data.orders.nodes;
    state.ordersLoaded = true;
    state.shownCriteria = asked;
    state.totalCount = data.orders.totalCount ?? null;
    state.searchError = null;
    for (const o of state.orders) {
      const mine = state.placed.get(o.id);
      if (mine) mine.listed = true;
    }
    render();
  } catch (e) {
    if (mine !== session) return;
    if (seq < ordersApplied) {
      overtaken();
      return;
    }
    const refused = e instanceof BoardError && e.errors.find((x) => x.code === 'VALIDATION');
    if (refused && isActive(asked)) {
      // The user's own input was refused: say why next to the search box.
      ordersApplied = seq;
      state.searchError = refused;
      render();
      return;
    }
    showErrors('orders', e);
  }
}

let searchTimer = null;

/** Search as you type: one read once the typing pauses for SEARCH_DEBOUNCE_MS. */
function searchSoon(delay = SEARCH_DEBOUNCE_MS) {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    searchTimer = null;
    fetchOrders();
  }, delay);
}

ui.search.addEventListener('input', () => searchSoon());
for (const input of [ui.statusFilter, ui.placedFrom, ui.placedTo]) input.addEventListener('change', () => searchSoon(0));
ui.searchForm.addEventListener('submit', (event) => {
  event.preventDefault();
  searchSoon(0);
});

let refreshTimer = null;
let refreshRunning = false;
let refreshAgain = false;

/** Coalesces the re-reads that projection notices ask for (one running, one queued). */
function scheduleRefresh() {
  if (refreshTimer !== null) return;
  refreshTimer = setTimeout(async () => {
    refreshTimer = null;
    if (refreshRunning) {
      refreshAgain = true;
      return;
    }
    refreshRunning = true;
    try {
      await fetchOrders();
    } finally {
      refreshRunning = false;
      if (refreshAgain) {
        refreshAgain = false;
        scheduleRefresh();
      }
    }
  }, 30);
}

async function loadChoices() {
  const mine = session;
  try {
    const data = await gql(CHOICES_QUERY);
    if (mine !== session) return;
    state.customers = data.customers.nodes;
    state.products = data.products.nodes;
    showChoices();
  } catch (e) {
    if (mine === session) showErrors('customers and products', e);
  }
}

/** Fills the selects. A customer orders for itself only: its select shows just itself and is locked. */
function showChoices() {
  const own = ownCustomerId();
  if (own) {
    const me = state.customers.find((c) => c.id === own) ?? { id: own, name: `you (${shortId(own)})`, email: 'not registered yet' };
    fillSelect(ui.customer, [me], (c) => `${c.name} <${c.email}> (you)`);
  } else {
    fillSelect(ui.customer, state.customers, (c) => `${c.name} <${c.email}>`);
  }
  ui.customer.disabled = Boolean(own);
  ui.customer.title = own ? 'a customer token orders for its own customer only' : '';
  fillSelect(ui.product, state.products, (p) => `${p.title} (${p.sku}) ${money(p.priceCents)}`);
  ui.place.disabled = !canPlace();
  showAuth();
}

function canPlace() {
  return state.auth !== 'anonymous' && state.auth !== 'refused' && state.products.length > 0 && (Boolean(ownCustomerId()) || state.customers.length > 0);
}

function fillSelect(select, items, label) {
  const keep = select.value;
  const options = items.map((item) => {
    const option = document.createElement('option');
    option.value = item.id;
    option.textContent = label(item);
    return option;
  });
  if (options.length === 0) {
    const none = document.createElement('option');
    none.value = '';
    none.textContent = '(none yet)';
    options.push(none);
  }
  select.replaceChildren(...options);
  if (items.some((item) => item.id === keep)) select.value = keep;
}

// ---------------------------------------------------------------- live

let client = null;
let generation = 0;

function wsUrl() {
  const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${window.location.host}/graphql/ws`;
}

function setConnection(stateName, text) {
  ui.conn.dataset.state = stateName;
  ui.conn.textContent = text;
}

/** Ends the WebSocket client; callbacks of the old client are ignored from here on. */
function stopLive() {
  generation += 1;
  if (client) {
    for (const order of state.placed.values()) dropWatch(order);
    client.dispose();
    client = null;
  }
}

/** (Re)starts the WebSocket client with the current token. */
function startLive() {
  stopLive();
  const gen = generation;
  const token = state.token;
  let connects = 0;
  client = createClient({
    url: wsUrl(),
    lazy: false,
    // Reconnect for ever: a server restart or deploy must not need a reload.
    retryAttempts: Number.MAX_SAFE_INTEGER,
    // ... except after 4403: the token is bad or expired, and the same token
    // will not do better (graphql-ws retries 4403 by default).
    shouldRetry: (err) => !isForbiddenClose(err),
    retryWait: (retries) => new Promise((resolve) => setTimeout(resolve, Math.min(250 * 2 ** retries, 2000) + Math.random() * 250)),
    connectionParams: () => (token ? { authorization: `Bearer ${token}` } : {}),
    on: {
      connecting: () => {
        if (gen === generation) setConnection('connecting', connects === 0 ? 'connecting…' : 'reconnecting…');
      },
      connected: () => {
        if (gen !== generation) return;
        connects += 1;
        setConnection('connected', 'live');
        ui.conn.dataset.connects = String(connects);
        onConnected();
      },
      closed: (event) => {
        if (gen !== generation) return;
        const detail = event && typeof event.code === 'number' ? ` (${event.code}${event.reason ? `: ${event.reason}` : ''})` : '';
        setConnection('closed', `disconnected${detail}, retrying`);
      },
    },
    // Close codes graphql-ws treats as fatal (4400, 4401, 4409, 4429, 4500, …)
    // end this client; start a new one after a pause, so the board still
    // recovers by itself.
    onNonLazyError: (err) => {
      if (gen !== generation) return;
      if (isForbiddenClose(err)) {
        showErrors('live connection', err);
        tokenRefused({ message: err.reason || 'the server refused the token', code: `CLOSE_${err.code}` });
        return;
      }
      showErrors('live connection', err);
      setConnection('closed', `disconnected (${toErrors(err)[0].code ?? 'error'}), retrying`);
      setTimeout(() => {
        if (gen === generation) startLive();
      }, RESTART_AFTER_FATAL_MS);
    },
  });
  client.subscribe(
    { query: PROJECTION_UPDATED },
    {
      next: (message) => {
        if (message.errors?.length) showErrors('projectionUpdated', message.errors);
        else scheduleRefresh();
      },
      error: (err) => {
        if (gen === generation && !isForbiddenClose(err)) showErrors('projectionUpdated', err);
      },
      complete: () => {},
    },
  );
}

/** On every (re)connect: catch up on what was missed and re-check every pending order. */
async function onConnected() {
  if (state.auth === 'unknown') {
    // The server could not be asked at start (it was down): ask now.
    const mine = session;
    await identify();
    if (mine !== session || state.auth === 'refused') return;
    if (state.auth === 'anonymous') {
      stopLive();
      setConnection('signed-out', 'not connected: no token');
      return;
    }
  }
  scheduleRefresh();
  loadChoices();
  for (const order of state.placed.values()) {
    if (order.visibility === 'pending') watchVisibility(order);
  }
}

/** Forgets the order's writeVisible watch (and its unanswered-ask timer); returns its stop. */
function forgetWatch(order) {
  clearTimeout(order.watch?.unanswered);
  const stop = order.stopWatch;
  order.stopWatch = null;
  order.watch = null;
  return stop;
}

/** Ends the order's writeVisible watch, unsubscribing it. */
function dropWatch(order) {
  const stop = forgetWatch(order);
  if (stop) stop();
}

/** Subscribes writeVisible(token) for a pending order until it says visible. */
function watchVisibility(order) {
  dropWatch(order);
  if (order.visibility !== 'pending' || !client) return;
  const watch = {};
  order.watch = watch;
  const current = () => order.watch === watch;
  let answered = false;
  order.asks = (order.asks ?? 0) + 1;
  // The answer is the signal; this timer only covers one that never comes.
  watch.unanswered = setTimeout(() => {
    if (!current() || answered || order.visibility !== 'pending') return;
    order.unanswered = (order.unanswered ?? 0) + 1;
    watchVisibility(order);
  }, UNANSWERED_MS);
  order.stopWatch = client.subscribe(
    { query: WRITE_VISIBLE, variables: { token: order.token, projections: VISIBLE_IN, timeoutMs: WAIT_MS } },
    {
      next: (message) => {
        if (!current()) return;
        if (message.errors?.length) {
          showErrors(`writeVisible for order ${shortId(order.id)}`, message.errors);
          return;
        }
        answered = true;
        if (message.data?.writeVisible?.visible) markVisible(order);
        else order.checks = (order.checks ?? 0) + 1;
      },
      error: (err) => {
        if (!current()) return;
        forgetWatch(order);
        if (!isForbiddenClose(err)) showErrors(`writeVisible for order ${shortId(order.id)}`, err);
        setTimeout(() => {
          if (order.visibility === 'pending' && !order.watch) watchVisibility(order);
        }, RETRY_FAILED_MS);
      },
      complete: () => {
        if (!current()) return;
        forgetWatch(order);
        // visible: false means the wait timed out: ask again right away.
        if (order.visibility === 'pending') {
          setTimeout(() => {
            if (order.visibility === 'pending' && !order.watch) watchVisibility(order);
          }, answered ? RECHECK_MS : RETRY_FAILED_MS);
        }
      },
    },
  );
  render();
}

function markVisible(order) {
  if (order.visibility !== 'pending') return;
  order.visibility = 'visible';
  order.ms = Math.round(performance.now() - order.clickedAt);
  dropWatch(order);
  render();
  // The view has the order now; read the list at least as new as this write.
  fetchOrders(order.token);
}

// ---------------------------------------------------------------- commands

ui.placeForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const clickedAt = performance.now();
  const customerId = ui.customer.value;
  const productId = ui.product.value;
  const quantity = Number.parseInt(ui.quantity.value, 10);
  const customer = state.customers.find((c) => c.id === customerId);
  const product = state.products.find((p) => p.id === productId);
  const mine = session;
  ui.place.disabled = true;
  try {
    const input = { lines: [{ productId, quantity: Number.isFinite(quantity) ? quantity : 0 }], channel: 'WEB', commandId: commandId() };
    // A customer's token names its customer: the server takes it from there.
    if (!ownCustomerId()) input.customerId = customerId;
    const data = await gql(PLACE_ORDER, { input });
    if (mine !== session) return;
    const { id, token } = data.placeOrder;
    const order = {
      id,
      token,
      clickedAt,
      visibility: 'pending',
      ms: null,
      listed: false,
      customerName: customer?.name ?? customerId,
      lines: [{ title: product?.title ?? productId, quantity }],
      totalCents: product ? product.priceCents * quantity : null,
      placedAt: new Date().toISOString(),
      watch: null,
      stopWatch: null,
    };
    state.placed.set(id, order);
    render();
    watchVisibility(order);
  } catch (e) {
    if (mine === session) showErrors('placeOrder', e);
  } finally {
    ui.place.disabled = !canPlace();
  }
});

async function act(orderId, kind) {
  const mine = session;
  state.busy.add(orderId);
  render();
  try {
    let token;
    if (kind === 'cancel') {
      const data = await gql(CANCEL_ORDER, { input: { orderId, reason: 'cancelled on the order board', commandId: commandId() } });
      token = data.cancelOrder.token;
    } else {
      const data = await gql(SHIP_ORDER, {
        input: { orderId, carrier: DEMO_CARRIER, trackingNumber: demoTracking(orderId), commandId: commandId() },
      });
      token = data.shipOrder.token;
    }
    // consistentWith: the answer includes this write.
    await fetchOrders(token);
  } catch (e) {
    if (mine === session) showErrors(`${kind}Order ${shortId(orderId)}`, e);
  } finally {
    state.busy.delete(orderId);
    render();
  }
}

function demoTracking(orderId) {
  return `DEMO-${orderId.replace(/-/g, '').slice(-10).toUpperCase()}`;
}

// ---------------------------------------------------------------- token

function readToken() {
  try {
    return window.localStorage.getItem(TOKEN_KEY) ?? '';
  } catch {
    return '';
  }
}

function setToken(token) {
  state.token = token;
  try {
    if (token) window.localStorage.setItem(TOKEN_KEY, token);
    else window.localStorage.removeItem(TOKEN_KEY);
  } catch (e) {
    showErrors('token', e);
  }
  showTokenState();
  beginSession();
}

// ---------------------------------------------------------------- identity

function ownCustomerId() {
  return state.viewer?.role === 'CUSTOMER' ? state.viewer.customerId : null;
}

function mayShip() {
  return state.viewer?.role === 'STAFF' || state.viewer?.role === 'ADMIN' || state.auth === 'unknown';
}

/** A new token (or the page's first load): forget what the last one saw, ask who this one is, then go live. */
async function beginSession() {
  const mine = ++session;
  stopLive();
  for (const order of state.placed.values()) dropWatch(order);
  state.placed.clear();
  state.orders = [];
  state.ordersLoaded = false;
  state.customers = [];
  state.products = [];
  state.viewer = null;
  state.auth = 'unknown';
  state.authError = null;
  showChoices();
  render();
  setConnection('connecting', 'connecting…');
  await identify();
  if (mine !== session) return;
  if (state.auth === 'anonymous') {
    setConnection('signed-out', 'not connected: no token');
    return;
  }
  if (state.auth === 'refused') return;
  // Signed in, or the server is unreachable for now (the client keeps trying).
  startLive();
  if (state.auth === 'signed-in') {
    // The first reads go over HTTP at once; the WebSocket's connect repeats them.
    fetchOrders();
    loadChoices();
  }
}

/** Asks the server who the token acts as (viewer). */
async function identify() {
  const mine = session;
  try {
    const { viewer } = await gql(VIEWER_QUERY);
    if (mine !== session) return;
    state.viewer = viewer;
    state.auth = viewer.role === 'ANONYMOUS' ? 'anonymous' : 'signed-in';
    state.authError = null;
  } catch (e) {
    if (mine !== session) return;
    // A refused token is shown by tokenRefused (gql saw the 401); anything
    // else (the server is down) leaves 'unknown', asked again on connect.
    if (state.auth !== 'refused') showErrors('viewer', e);
  }
  showChoices();
  render();
}

/** The server refused the token (HTTP 401, or WebSocket 4403): say so, stop asking with it. */
function tokenRefused(error) {
  stopLive();
  state.viewer = null;
  state.auth = 'refused';
  state.authError = error;
  setConnection('signed-out', 'not connected: token refused');
  showChoices();
  render();
}

/** Who the board acts as, and the notice when it cannot act at all. */
function showAuth() {
  const v = state.viewer;
  ui.viewer.dataset.role = v?.role ?? '';
  ui.viewer.dataset.auth = state.auth;
  let text;
  if (state.auth === 'refused') text = 'token refused: acting as nobody';
  else if (state.auth === 'anonymous') text = 'not signed in: this server requires a token';
  else if (!v) text = 'who you are: asking the server…';
  else if (v.role === 'CUSTOMER') {
    const me = state.customers.find((c) => c.id === v.customerId);
    text = `acting as customer ${me ? me.name : `#${shortId(v.customerId)}`}: your own orders only; shipping is for staff`;
  } else if (v.sub === 'open') text = 'acting as staff: open development mode (the server has no keys, so every request is staff)';
  else text = `acting as ${v.role.toLowerCase()} “${v.sub}”`;
  ui.viewer.textContent = text;

  const notice = noticeFor();
  ui.notice.hidden = !notice;
  ui.notice.dataset.kind = notice ? state.auth : '';
  ui.notice.dataset.code = notice?.code ?? '';
  if (notice) {
    ui.noticeTitle.textContent = notice.title;
    ui.noticeMessage.textContent = notice.message;
    ui.noticeCode.textContent = notice.code;
    ui.noticeHelp.replaceChildren(...notice.help);
  }
}

function noticeFor() {
  const mint = () => [
    ' Mint one with ',
    el('code', { textContent: 'twofold token --role staff' }),
    ' or ',
    el('code', { textContent: 'twofold token --role customer --customer-id <id>' }),
    ', with the server\'s ',
    el('code', { textContent: 'TWOFOLD_JWT_SECRET' }),
    '.',
  ];
  if (state.auth === 'anonymous') {
    return {
      title: 'Sign in to use the board.',
      message: 'This server requires a bearer token: without one, orders and customers answer UNAUTHENTICATED.',
      code: 'UNAUTHENTICATED',
      help: ['Paste a token under Token and press Use.', ...mint()],
    };
  }
  if (state.auth === 'refused') {
    return {
      title: 'The server refused the token.',
      message: state.authError?.message ?? 'the token is not valid',
      code: state.authError?.code ?? 'UNAUTHENTICATED',
      help: ['Paste a valid token under Token and press Use, or Clear it.', ...mint()],
    };
  }
  return null;
}

function showTokenState() {
  ui.token.value = state.token;
  ui.tokenState.textContent = state.token ? `token set (…${state.token.slice(-6)})` : 'no token';
  ui.tokenState.dataset.set = state.token ? 'true' : 'false';
}

ui.tokenForm.addEventListener('submit', (event) => {
  event.preventDefault();
  setToken(ui.token.value.trim());
});
ui.tokenClear.addEventListener('click', () => setToken(''));

// ---------------------------------------------------------------- render

function money(cents) {
  return typeof cents === 'number' ? `$${(cents / 100).toFixed(2)}` : '';
}

/**
 * The id's last group (12 hex digits): UUIDv7s share their leading (time)
 * digits, and the last group is random and one whole word of the order's
 * search document, so the short id shown can be typed into the search box.
 */
function shortId(id) {
  return id.slice(id.lastIndexOf('-') + 1);
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined) continue;
    if (key === 'dataset') Object.assign(node.dataset, value);
    else node[key] = value;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

/** Server rows first merged with what this page knows; placed orders not yet listed on top
 * (under a search or filter only while pending: once visible, the server says whether it matches). */
function rows() {
  const listed = new Set(state.orders.map((o) => o.id));
  const searching = isActive(state.shownCriteria);
  const unlisted = [...state.placed.values()]
    .filter((o) => !listed.has(o.id) && (o.visibility === 'pending' || (!o.listed && !searching)))
    .sort((a, b) => b.clickedAt - a.clickedAt)
    .map((o) => ({ ...o, status: 'PLACED', local: true }));
  return [...unlisted, ...state.orders.map((o) => ({ ...o, ...pick(state.placed.get(o.id)) }))];
}

function pick(mine) {
  return mine ? { visibility: mine.visibility, ms: mine.ms, checks: mine.checks, asks: mine.asks, unanswered: mine.unanswered } : {};
}

function render() {
  const items = rows().map(renderOrder);
  ui.orders.replaceChildren(...items);
  const signedOut = state.auth === 'anonymous' || state.auth === 'refused';
  const searching = isActive(state.shownCriteria);
  ui.ordersEmpty.textContent = signedOut
    ? 'Sign in with a token to see orders.'
    : searching
      ? 'No orders match the search and filters.'
      : 'No orders yet.';
  renderSearchStatus(searching);
  // What the shown list answers (the browser tests wait on these).
  const shown = state.shownCriteria ?? {};
  Object.assign(ui.orders.dataset, {
    search: shown.search ?? '',
    status: shown.status ?? '',
    placedFrom: shown.from ?? '',
    placedTo: shown.to ?? '',
    answers: String(ordersApplied),
  });
  ui.ordersEmpty.hidden = !(signedOut || (state.ordersLoaded && items.length === 0));
  const pending = [...state.placed.values()].filter((o) => o.visibility === 'pending').length;
  ui.ordersMeta.textContent = pending ? `${pending} pending` : '';
  ui.ordersMeta.dataset.pending = String(pending);
}

/** The match count, or why the search was refused. */
function renderSearchStatus(searching) {
  const s = ui.searchStatus;
  if (state.searchError) {
    s.dataset.state = 'error';
    s.replaceChildren(
      el('strong', { textContent: 'Search refused: ' }),
      el('span', { textContent: state.searchError.message, dataset: { testid: 'search-error' } }),
      ' ',
      el('code', { className: 'error-code', textContent: state.searchError.code }),
    );
    return;
  }
  if (searching && state.totalCount !== null) {
    const n = state.totalCount;
    s.dataset.state = 'counted';
    s.dataset.count = String(n);
    const shown = Math.min(n, state.orders.length);
    s.textContent = `${n} matching ${n === 1 ? 'order' : 'orders'}${n > shown ? ` (newest ${shown} shown)` : ''}`;
    return;
  }
  s.dataset.state = 'idle';
  delete s.dataset.count;
  s.textContent = '';
}

function renderOrder(o) {
  const li = el('li', {
    className: 'order',
    dataset: {
      testid: 'order',
      orderId: o.id,
      status: o.status,
      visibility: o.visibility ?? '',
      // true once the order came back in the server's list (not only known to this page)
      listed: String(!o.local),
    },
  });
  if (o.visibility === 'visible' && typeof o.ms === 'number') li.dataset.clickToVisibleMs = String(o.ms);
  // How the wait went (read by the browser tests when an order stays pending):
  // writeVisible subscriptions asked, answers of visible: false, and asks that got no answer at all.
  if (o.asks) Object.assign(li.dataset, { visibilityAsks: String(o.asks), visibilityChecks: String(o.checks ?? 0), visibilityUnanswered: String(o.unanswered ?? 0) });

  const head = el(
    'div',
    { className: 'order-head' },
    el('span', { className: 'order-id', title: o.id, textContent: `#${shortId(o.id)}`, dataset: { testid: 'order-id' } }),
    el('span', { className: `chip status-${o.status}`, textContent: o.status, dataset: { testid: 'order-status' } }),
    o.visibility
      ? el('span', {
          className: `chip vis-${o.visibility}`,
          textContent: o.visibility === 'visible' ? `visible in ${o.ms} ms` : 'pending',
          title: o.visibility === 'visible' ? 'from the click to writeVisible: visible' : 'committed; waiting for the order view',
          dataset: { testid: 'order-visibility' },
        })
      : null,
    el('span', { className: 'order-total', textContent: money(o.totalCents), dataset: { testid: 'order-total' } }),
  );
  const lines = (o.lines ?? []).map((l) => `${l.quantity} × ${l.title}`).join(', ');
  const meta = [o.customerName, o.placedAt ? new Date(o.placedAt).toLocaleString() : null];
  if (o.status === 'SHIPPED' && o.carrier) meta.push(`${o.carrier} ${o.trackingNumber ?? ''}`.trim());
  const busy = state.busy.has(o.id);
  const open = o.status === 'PLACED';
  const cancel = el('button', { type: 'button', textContent: 'Cancel', disabled: busy || !open, dataset: { testid: 'cancel-order' } });
  const staff = mayShip();
  const ship = el('button', {
    type: 'button',
    textContent: 'Ship',
    disabled: busy || !open || !staff,
    title: staff ? '' : 'only staff may ship orders',
    dataset: { testid: 'ship-order', staffOnly: String(!staff) },
  });
  cancel.addEventListener('click', () => act(o.id, 'cancel'));
  ship.addEventListener('click', () => act(o.id, 'ship'));
  li.append(
    head,
    el('div', { className: 'order-line', textContent: lines, dataset: { testid: 'order-lines' } }),
    el('div', { className: 'order-meta', textContent: meta.filter(Boolean).join(' · '), dataset: { testid: 'order-meta' } }),
    el('div', { className: 'order-actions' }, cancel, ship),
  );
  return li;
}

// ---------------------------------------------------------------- start

showTokenState();
beginSession();
