// The core client against the real server, on SQLite and PostgreSQL.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BACKENDS, app, seed, orderInput, orderIds, PLACE_ORDER, ORDERS } from './helpers.js';
import { TwofoldError, compareTokens, laterToken, prepareCommand } from '../dist/index.js';
import { print } from 'graphql';
import WebSocket from 'ws';

const FUTURE = '900000000000.1';

describe('tokens', () => {
  it('order by transaction, then position, as numbers', () => {
    assert.ok(compareTokens('7.100', '8.1') < 0);
    assert.ok(compareTokens('7.100', '7.99') > 0, 'not as strings');
    assert.ok(compareTokens('10.1', '9.1') > 0, 'not as strings');
    assert.equal(compareTokens('9007199254740993.1', '9007199254740992.1'), 1, 'beyond 2^53');
    assert.equal(laterToken(null, '1.2'), '1.2');
    assert.equal(laterToken('3.1', '2.9'), '3.1');
    assert.throws(() => compareTokens('x', '1.1'), (e) => e instanceof TwofoldError && e.code === 'VALIDATION');
  });

  it('a command gets a commandId in its input, as a variable or inline, and selects its token', async () => {
    const byVariable = await prepareCommand('mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }', { input: { customerId: 'c' } });
    assert.match(byVariable.variables.input.commandId, /^[0-9a-f-]{36}$/);
    assert.equal(byVariable.commandId, byVariable.variables.input.commandId);
    assert.match(print(byVariable.document), /token/);
    const given = await prepareCommand(PLACE_ORDER, { input: { commandId: 'mine' } });
    assert.equal(given.commandId, 'mine');
    const inline = await prepareCommand('mutation { cancelOrder(input: {orderId: "o"}) { token } }', {});
    assert.match(print(inline.document), new RegExp(`commandId: "${inline.commandId}"`));
    await assert.rejects(prepareCommand('{ viewer { role } }', {}), (e) => e.code === 'VALIDATION');
  });
});

for (const backend of BACKENDS) {
  describe(`core client (${backend})`, () => {
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

    it('command resolves once the write is visible, and a query then shows it', async () => {
      const placed = await tf.command(PLACE_ORDER, { input: orderInput(ids) });
      assert.equal(placed.visible, true);
      assert.equal(placed.token, placed.data.placeOrder.token);
      assert.equal(tf.sessionToken, placed.token, 'the session keeps the highest token');
      // Without the session token: the views already show it (command waited).
      const { data } = await tf.query(ORDERS, { c: ids.customerId }, { consistentWith: null });
      assert.ok(orderIds(data).includes(placed.data.placeOrder.id));
    });

    it("until: 'accepted' resolves at commit, and the session's query still reads the write", async () => {
      const placed = await tf.command(PLACE_ORDER, { input: orderInput(ids) }, { until: 'accepted' });
      assert.equal(placed.visible, false);
      assert.equal(tf.sessionToken, placed.token);
      const { data } = await tf.query(ORDERS, { c: ids.customerId });
      assert.ok(orderIds(data).includes(placed.data.placeOrder.id), 'consistentWith made the query wait');
    });

    it('query sends the session token: one the views never reach is NOT_VISIBLE_YET', async () => {
      const other = server.client({ url: server.graphql });
      other.noteToken(FUTURE);
      await assert.rejects(other.query(ORDERS, {}), (e) => {
        assert.ok(e instanceof TwofoldError);
        assert.equal(e.code, 'NOT_VISIBLE_YET');
        assert.equal(e.status, 200);
        return true;
      });
      other.dispose();
    });

    it('awaitVisible answers for a visible token, and times out for a future one', async () => {
      const placed = await tf.command(PLACE_ORDER, { input: orderInput(ids) }, { until: 'accepted' });
      assert.deepEqual(await tf.awaitVisible(placed.token, { timeoutMs: 5000 }), { visible: true });
      assert.deepEqual(await tf.awaitVisible(FUTURE, { timeoutMs: 200 }), { visible: false, reason: 'TIMED_OUT' });
    });

    it('awaitVisible returns in bounded time when an answer is lost on the way, and asks again', async () => {
      // The first writeVisible's frames (its next and complete) never reach
      // the client, as behind a proxy that drops them or a quietly dead socket.
      const lost = { id: null, frames: 0 };
      class Swallowing extends WebSocket {
        send(data, ...rest) {
          const frame = JSON.parse(String(data));
          if (lost.id === null && frame.type === 'subscribe' && /writeVisible/.test(frame.payload.query)) lost.id = frame.id;
          return super.send(data, ...rest);
        }
        get onmessage() {
          return super.onmessage;
        }
        set onmessage(handler) {
          super.onmessage = (event) => {
            if (lost.id !== null && JSON.parse(String(event.data)).id === lost.id) {
              lost.frames += 1;
              return;
            }
            handler(event);
          };
        }
      }
      const lossy = server.client({ webSocketImpl: Swallowing });
      try {
        const placed = await tf.command(PLACE_ORDER, { input: orderInput(ids) });
        const started = Date.now();
        assert.deepEqual(await lossy.awaitVisible(placed.token, { timeoutMs: 300 }), { visible: false, reason: 'TIMED_OUT' });
        assert.ok(lost.frames >= 1, 'nothing was swallowed');
        assert.ok(Date.now() - started < 300 + 5000 + 3000, `took ${Date.now() - started} ms`);
        assert.deepEqual(await lossy.awaitVisible(placed.token, { timeoutMs: 5000 }), { visible: true }, 'the next ask is answered');
      } finally {
        lossy.dispose();
      }
    });

    it('an aborted awaitVisible rejects ABORTED at once, long before its timeout', async () => {
      const controller = new AbortController();
      const started = Date.now();
      const waiting = tf.awaitVisible(FUTURE, { timeoutMs: 8000, signal: controller.signal });
      // Aborted mid-wait (the client gives no signal for "subscribed"; 100 ms is ample on the open socket).
      setTimeout(() => controller.abort(), 100);
      await assert.rejects(waiting, (e) => e instanceof TwofoldError && e.code === 'ABORTED' && e.token === FUTURE);
      assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms of the 8000 it would have waited`);
      // The socket still serves the next wait.
      const placed = await tf.command(PLACE_ORDER, { input: orderInput(ids) });
      assert.equal(placed.visible, true);
    });

    it('a repeated commandId places one order', async () => {
      const commandId = crypto.randomUUID();
      const first = await tf.command(PLACE_ORDER, { input: { ...orderInput(ids), commandId } });
      const again = await tf.command(PLACE_ORDER, { input: { ...orderInput(ids), commandId } });
      assert.equal(first.data.placeOrder.id, again.data.placeOrder.id);
      assert.equal(first.commandId, commandId);
    });

    it('VALIDATION errors carry the code, the errors and the HTTP status', async () => {
      await assert.rejects(tf.command(PLACE_ORDER, { input: orderInput(ids, 0) }), (e) => {
        assert.ok(e instanceof TwofoldError);
        assert.equal(e.code, 'VALIDATION');
        assert.ok(e.errors.length >= 1 && e.errors[0].message.length > 0);
        assert.equal(e.status, 200);
        return true;
      });
      // A document that does not validate: a request error, 400.
      await assert.rejects(tf.query('{ orders { nope } }'), (e) => e.code === 'VALIDATION' && e.status === 400);
      // A bad token given to the server over the WebSocket.
      await assert.rejects(tf.query(ORDERS, {}, { consistentWith: 'nope' }), (e) => e.code === 'VALIDATION' && /consistentWith/.test(e.message));
      await assert.rejects(tf.awaitVisible('nope'), (e) => e.code === 'VALIDATION');
    });

    it('awaitVisible for a projection the server does not know is VALIDATION', async () => {
      const tiny = server.client();
      await assert.rejects(tiny.awaitVisible(FUTURE, { timeoutMs: 10, projections: ['nope'] }), (e) => e.code === 'VALIDATION' && /unknown projection/.test(e.message));
      tiny.dispose();
    });

    it('dispose closes the WebSocket; the client refuses afterwards', async () => {
      const short = server.client();
      const placed = await short.command(PLACE_ORDER, { input: orderInput(ids) });
      assert.equal(placed.visible, true);
      short.dispose();
      await assert.rejects(short.awaitVisible(placed.token), (e) => e.code === 'DISPOSED');
    });
  });
}
