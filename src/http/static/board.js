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
/** A client ended by a fatal close code is replaced after this long. */
const RESTART_AFTER_FATAL_MS = 5000;
const DEMO_CARRIER = 'Demo Post';
const MAX_ERRORS = 30;

const ORDERS_QUERY = `query BoardOrders($consistentWith: Token) {
  orders(first: 20, consistentWith: $consistentWith) {
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
  errorsPanel: document.querySelector('[data-testid="errors"]'),
  errors: $('errors'),
  errorsClear: $('errors-clear'),
  orders: $('orders'),
  ordersEmpty: $('orders-empty'),
  ordersMeta: $('orders-meta'),
};

const state = {
  token: readToken(),
  /** Newest orders as the order_summary view last answered. */
  orders: [],
  ordersLoaded: false,
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

async function gql(query, variables = {}) {
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
  if (Array.isArray(body.errors) && body.errors.length > 0) throw new BoardError(fromGraphQLErrors(body.errors));
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

/** Re-reads the newest orders; an answer older than one already shown is dropped. */
async function fetchOrders(consistentWith = null) {
  const seq = ++ordersSeq;
  try {
    const data = await gql(ORDERS_QUERY, { consistentWith });
    if (seq < ordersApplied) return;
    ordersApplied = seq;
    state.orders = data.orders.nodes;
    state.ordersLoaded = true;
    for (const o of state.orders) {
      const mine = state.placed.get(o.id);
      if (mine) mine.listed = true;
    }
    render();
  } catch (e) {
    showErrors('orders', e);
  }
}

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
  try {
    const data = await gql(CHOICES_QUERY);
    state.customers = data.customers.nodes;
    state.products = data.products.nodes;
    fillSelect(ui.customer, state.customers, (c) => `${c.name} <${c.email}>`);
    fillSelect(ui.product, state.products, (p) => `${p.title} (${p.sku}) ${money(p.priceCents)}`);
    ui.place.disabled = state.customers.length === 0 || state.products.length === 0;
  } catch (e) {
    showErrors('customers and products', e);
  }
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

/** (Re)starts the WebSocket client with the current token. */
function startLive() {
  if (client) {
    for (const order of state.placed.values()) dropWatch(order);
    client.dispose();
  }
  const gen = ++generation;
  const token = state.token;
  let connects = 0;
  client = createClient({
    url: wsUrl(),
    lazy: false,
    // Reconnect for ever: a server restart or deploy must not need a reload.
    retryAttempts: Number.MAX_SAFE_INTEGER,
    shouldRetry: () => true,
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
        if (gen === generation) showErrors('projectionUpdated', err);
      },
      complete: () => {},
    },
  );
}

/** On every (re)connect: catch up on what was missed and re-check every pending order. */
function onConnected() {
  scheduleRefresh();
  loadChoices();
  for (const order of state.placed.values()) {
    if (order.visibility === 'pending') watchVisibility(order);
  }
}

function dropWatch(order) {
  const stop = order.stopWatch;
  order.stopWatch = null;
  order.watch = null;
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
        order.watch = null;
        order.stopWatch = null;
        showErrors(`writeVisible for order ${shortId(order.id)}`, err);
        setTimeout(() => {
          if (order.visibility === 'pending' && !order.watch) watchVisibility(order);
        }, RETRY_FAILED_MS);
      },
      complete: () => {
        if (!current()) return;
        order.watch = null;
        order.stopWatch = null;
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
  ui.place.disabled = true;
  try {
    const data = await gql(PLACE_ORDER, {
      input: { customerId, lines: [{ productId, quantity: Number.isFinite(quantity) ? quantity : 0 }], channel: 'WEB', commandId: commandId() },
    });
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
    showErrors('placeOrder', e);
  } finally {
    ui.place.disabled = state.customers.length === 0 || state.products.length === 0;
  }
});

async function act(orderId, kind) {
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
    showErrors(`${kind}Order ${shortId(orderId)}`, e);
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
  startLive();
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

/** The end of the id: UUIDv7s share their leading (time) digits. */
function shortId(id) {
  return id.replace(/-/g, '').slice(-8);
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

/** Server rows first merged with what this page knows; placed orders not yet listed on top. */
function rows() {
  const listed = new Set(state.orders.map((o) => o.id));
  const unlisted = [...state.placed.values()]
    .filter((o) => !listed.has(o.id) && (o.visibility === 'pending' || !o.listed))
    .sort((a, b) => b.clickedAt - a.clickedAt)
    .map((o) => ({ ...o, status: 'PLACED', local: true }));
  return [...unlisted, ...state.orders.map((o) => ({ ...o, ...pick(state.placed.get(o.id)) }))];
}

function pick(mine) {
  return mine ? { visibility: mine.visibility, ms: mine.ms } : {};
}

function render() {
  const items = rows().map(renderOrder);
  ui.orders.replaceChildren(...items);
  ui.ordersEmpty.hidden = !state.ordersLoaded || items.length > 0;
  const pending = [...state.placed.values()].filter((o) => o.visibility === 'pending').length;
  ui.ordersMeta.textContent = pending ? `${pending} pending` : '';
  ui.ordersMeta.dataset.pending = String(pending);
}

function renderOrder(o) {
  const li = el('li', {
    className: 'order',
    dataset: {
      testid: 'order',
      orderId: o.id,
      status: o.status,
      visibility: o.visibility ?? '',
    },
  });
  if (o.visibility === 'visible' && typeof o.ms === 'number') li.dataset.clickToVisibleMs = String(o.ms);

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
  const ship = el('button', { type: 'button', textContent: 'Ship', disabled: busy || !open, dataset: { testid: 'ship-order' } });
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
render();
startLive();
// The first reads go over HTTP at once; the WebSocket's connect repeats them.
fetchOrders();
loadChoices();
