// Error paths: a 503 retried (a command exactly once), a keyed server's
// UNAUTHENTICATED / FORBIDDEN, refreshAuth over the open socket. (A write
// that is not visible, stalled or stopped: not-visible.test.js.)
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { BACKENDS, app, mint, seed, orderInput, orderIds, PLACE_ORDER, ORDERS, REGISTER } from './helpers.js';
import { TwofoldError } from '../dist/index.js';

/**
 * A proxy in front of `target`: the first POST whose body matches `pattern`
 * is passed on to the server (so it runs) but answered 503 with
 * Retry-After; everything else passes through.
 */
async function flakyProxy(target, pattern) {
  const seen = [];
  const server = http.createServer(async (request, response) => {
    const chunks = [];
    for await (const chunk of request) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    const text = `${decodeURIComponent(request.url)} ${body.toString()}`;
    const upstream = await fetch(`${target}${request.url}`, {
      method: request.method,
      headers: { 'content-type': request.headers['content-type'] ?? 'application/json', accept: request.headers.accept ?? '*/*' },
      body: request.method === 'POST' ? body : undefined,
    });
    const answer = await upstream.text();
    seen.push(text);
    if (pattern.test(text) && seen.filter((t) => pattern.test(t)).length === 1) {
      response.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
      response.end(JSON.stringify({ errors: [{ message: 'the service is overloaded; retry in a moment', extensions: { code: 'UNAVAILABLE' } }] }));
      return;
    }
    response.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' });
    response.end(answer);
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return { url: `http://127.0.0.1:${server.address().port}/graphql`, seen, close: () => new Promise((ok) => server.close(ok)) };
}

for (const backend of BACKENDS) {
  describe(`503 and Retry-After (${backend})`, () => {
    let server;
    let tf;
    let ids;
    before(async () => {
      server = await app(backend);
      tf = server.client();
      ids = await seed(tf);
    });
    after(async () => {
      tf?.dispose();
      await server?.stop();
    });

    it('a command that ran but was answered 503 is retried with its commandId and leaves exactly one order', async () => {
      const proxy = await flakyProxy(server.url, /placeOrder/);
      const through = server.client({ url: proxy.url, wsUrl: tf.wsUrl });
      try {
        const placed = await through.command(PLACE_ORDER, { input: orderInput(ids) });
        const attempts = proxy.seen.filter((t) => /placeOrder/.test(t)).map((t) => JSON.parse(t.slice(t.indexOf(' ') + 1)).variables.input.commandId);
        assert.equal(attempts.length, 2, 'answered 503 once, then retried');
        assert.equal(attempts[0], attempts[1], 'the retry carries the same commandId');
        const { data } = await tf.query(ORDERS, { c: ids.customerId }, { consistentWith: placed.token });
        assert.deepEqual(orderIds(data), [placed.data.placeOrder.id], 'exactly one order');
      } finally {
        through.dispose();
        await proxy.close();
      }
    });

    it('a query is retried after a 503; with no retries left the error says UNAVAILABLE and 503', async () => {
      const proxy = await flakyProxy(server.url, /orders/);
      const through = server.client({ url: proxy.url });
      const once = server.client({ url: proxy.url, retry: { attempts: 0 } });
      try {
        const { data } = await through.query(ORDERS, { c: ids.customerId });
        assert.ok(Array.isArray(data.orders.edges));
        assert.equal(proxy.seen.length, 2);
        const proxy2 = await flakyProxy(server.url, /orders/);
        const refused = server.client({ url: proxy2.url, retry: { attempts: 0 } });
        await assert.rejects(refused.query(ORDERS, {}), (e) => e instanceof TwofoldError && e.code === 'UNAVAILABLE' && e.status === 503);
        refused.dispose();
        await proxy2.close();
      } finally {
        through.dispose();
        once.dispose();
        await proxy.close();
      }
    });
  });
}

for (const backend of BACKENDS.slice(0, 1)) {
  describe(`tf.fetch, for urql and Apollo (${backend})`, () => {
    let server;
    let ids;
    before(async () => {
      server = await app(backend);
      const tf = server.client();
      ids = await seed(tf);
      tf.dispose();
    });
    after(async () => server?.stop());

    it('retries a query (GET too) after a 503, and a mutation only when it carries a commandId', async () => {
      const through = async (pattern, request) => {
        const proxy = await flakyProxy(server.url, pattern);
        const tf = server.client({ url: proxy.url, retry: { attempts: 2 } });
        try {
          const response = await request(tf, proxy.url);
          return { status: response.status, attempts: proxy.seen.length };
        } finally {
          tf.dispose();
          await proxy.close();
        }
      };
      const get = await through(/orders/, (tf, url) => tf.fetch(`${url}?query=${encodeURIComponent('{ orders { edges { cursor } } }')}`));
      assert.deepEqual(get, { status: 200, attempts: 2 }, 'a GET query is retried');
      const post = (input) => (tf, url) =>
        tf.fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: PLACE_ORDER, variables: { input } }) });
      const bare = await through(/placeOrder/, post(orderInput(ids)));
      assert.deepEqual(bare, { status: 503, attempts: 1 }, 'a mutation with no commandId is not retried');
      const keyed = await through(/placeOrder/, post({ ...orderInput(ids), commandId: crypto.randomUUID() }));
      assert.deepEqual(keyed, { status: 200, attempts: 2 }, 'with a commandId it is');
    });
  });
}

describe('a keyed server', () => {
  const secret = randomBytes(32).toString('hex');
  let server;
  let staff;
  let ids;
  before(async () => {
    server = await app('sqlite', { env: { TWOFOLD_JWT_SECRET: secret } });
    const token = await mint(secret, 'staff');
    staff = server.client({ headers: () => ({ authorization: `Bearer ${token}` }) });
    ids = await seed(staff);
  });
  after(async () => {
    staff?.dispose();
    await server?.stop();
  });

  it('a bad token is UNAUTHENTICATED with HTTP 401, over HTTP and over the WebSocket', async () => {
    const bad = server.client({ headers: { authorization: 'Bearer not-a-jwt' } });
    await assert.rejects(bad.query(ORDERS, {}), (e) => e instanceof TwofoldError && e.code === 'UNAUTHENTICATED' && e.status === 401);
    await assert.rejects(bad.awaitVisible('0.1'), (e) => e instanceof TwofoldError && e.code === 'FORBIDDEN' && /4403/.test(e.message));
    bad.dispose();
  });

  it('no token: UNAUTHENTICATED for a command; a customer acting for another: FORBIDDEN', async () => {
    const anonymous = server.client();
    await assert.rejects(anonymous.command(PLACE_ORDER, { input: orderInput(ids) }), (e) => e.code === 'UNAUTHENTICATED');
    anonymous.dispose();
    const other = await staff.command(REGISTER, { input: { name: 'Bob', email: `bob-${Date.now()}@example.com` } });
    const token = await mint(secret, 'customer', { customerId: other.data.registerCustomer.id });
    const bob = server.client({ headers: async () => ({ authorization: `Bearer ${token}` }) });
    await assert.rejects(bob.command(PLACE_ORDER, { input: orderInput(ids) }), (e) => e.code === 'FORBIDDEN' && e.status === 200);
    // His own order goes through, and he reads it.
    const own = await bob.command(PLACE_ORDER, { input: orderInput({ ...ids, customerId: other.data.registerCustomer.id }) });
    const { data } = await bob.query(ORDERS, {});
    assert.deepEqual(orderIds(data), [own.data.placeOrder.id]);
    bob.dispose();
  });

  it('refreshAuth sends the new token over the open socket; its subscription lives on', async () => {
    let token = await mint(secret, 'staff', { ttl: '1h' });
    const tf = server.client({ headers: () => ({ authorization: `Bearer ${token}` }) });
    try {
      assert.equal(await tf.refreshAuth(), null, 'no socket yet: nothing to refresh');
      const placed = await tf.command(PLACE_ORDER, { input: orderInput(ids) }, { until: 'accepted' });
      // A wait that stays open across the refresh.
      const waiting = tf.awaitVisible('900000000000.1', { timeoutMs: 1500 });
      assert.deepEqual(await tf.awaitVisible(placed.token), { visible: true }, 'the socket is open');
      token = await mint(secret, 'staff', { ttl: '2h' });
      const refreshed = await tf.refreshAuth();
      const inTwoHours = Date.now() / 1000 + 7200;
      assert.ok(Math.abs(refreshed.expiresAt - inTwoHours) < 120, `expiresAt ${refreshed.expiresAt}`);
      assert.deepEqual(await waiting, { visible: false, reason: 'TIMED_OUT' }, 'the subscription was not dropped');
    } finally {
      tf.dispose();
    }
  });
});
