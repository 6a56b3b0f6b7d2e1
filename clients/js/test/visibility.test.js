// The client's rules, without a server: how awaitVisible waits on what the
// server answers (each `writeVisible` ask answered by a script here), the
// one mapping from a write that is not visible to its error, and which
// requests tf.fetch may send again.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createClient, notVisibleError, reasonMeaning, retryableRequest, TwofoldError } from '../dist/index.js';

const TOKEN = '7.42';
const WAITING_ON = {
  kind: 'SQLITE_WRITE_LOCK',
  detail: 'BEGIN IMMEDIATE waits for the write lock',
  since: '2026-12-06T05:00:00Z',
  blockers: [],
};
const STALLED = { visible: false, reason: 'STALLED', blockedBy: 'order_summary', waitingOn: WAITING_ON };
const PENDING = { visible: false, reason: 'TIMED_OUT' };

/**
 * A client whose `writeVisible` asks are answered by `answer(ask)` in turn
 * (as the server would: after the ask's wait, unless it answers at once);
 * `asks` records each ask's wait. Nothing is sent anywhere.
 */
function scripted(answer, options = {}) {
  const tf = createClient({ url: 'http://127.0.0.1:9/graphql', ...options });
  const asks = [];
  tf.writeVisible = async (token, projections, wait, signal) => {
    const ask = { token, projections, wait, index: asks.length, signal };
    asks.push(ask);
    return answer(ask);
  };
  return { tf, asks };
}

const after = (ms, value) => new Promise((ok) => setTimeout(() => ok(value), ms));

describe('awaitVisible waits through what may still clear', () => {
  it('a STALLED answer is told to onStalled and asked again, in 2 s slices, until visible', async () => {
    const { tf, asks } = scripted(({ index }) => (index < 2 ? STALLED : { visible: true }));
    const stalls = [];
    const answer = await tf.awaitVisible(TOKEN, { timeoutMs: 30_000, onStalled: (s) => stalls.push(s) });
    assert.deepEqual(answer, { visible: true });
    assert.deepEqual(stalls, [
      { token: TOKEN, view: 'order_summary', waitingOn: WAITING_ON },
      { token: TOKEN, view: 'order_summary', waitingOn: WAITING_ON },
    ]);
    assert.deepEqual(asks.map((a) => a.wait), [2000, 2000, 2000], 'with a listener, asks of 2 s');
  });

  it("without a listener it asks for the server's cap, 10 s, and still waits through a stall", async () => {
    const { tf, asks } = scripted(({ index }) => (index === 0 ? STALLED : { visible: true }));
    assert.deepEqual(await tf.awaitVisible(TOKEN, { timeoutMs: 30_000 }), { visible: true });
    assert.equal(asks.length, 2);
    assert.ok(asks[0].wait > 9_900 && asks[0].wait <= 10_000, `asked ${asks[0].wait} ms`);
  });

  it("the client's onStalled hears every wait that gives none of its own", async () => {
    const heard = [];
    const { tf } = scripted(({ index }) => (index === 0 ? STALLED : { visible: true }), { onStalled: (s) => heard.push(s.view) });
    await tf.awaitVisible(TOKEN, { timeoutMs: 30_000 });
    assert.deepEqual(heard, ['order_summary']);
    const own = [];
    await tf.awaitVisible(TOKEN, { timeoutMs: 30_000, onStalled: (s) => own.push(s.view) });
    assert.deepEqual(heard, ['order_summary'], 'a call with its own listener is not told to the client');
    assert.deepEqual(own, [], 'the script answers visible from its second ask on');
  });

  it("the caller's timeout ends it: TIMED_OUT with the last stall's view and waitingOn", async () => {
    const { tf, asks } = scripted(({ wait }) => after(wait, STALLED));
    const started = Date.now();
    const answer = await tf.awaitVisible(TOKEN, { timeoutMs: 150 });
    assert.deepEqual(answer, { visible: false, reason: 'TIMED_OUT', blockedBy: 'order_summary', waitingOn: WAITING_ON });
    assert.ok(Date.now() - started >= 150);
    assert.ok(asks.length >= 1 && asks.every((a) => a.wait <= 150));
  });

  it('a wait that only timed out says so, with no stall', async () => {
    const { tf } = scripted(({ wait }) => after(wait, PENDING));
    assert.deepEqual(await tf.awaitVisible(TOKEN, { timeoutMs: 60 }), { visible: false, reason: 'TIMED_OUT' });
  });

  it('a stopped view or a dead letter ends it at once: an operator must act', async () => {
    for (const reason of ['PROJECTION_STOPPED', 'DEAD_LETTERED']) {
      const { tf, asks } = scripted(() => ({ visible: false, reason, blockedBy: 'order_summary' }));
      const stalls = [];
      assert.deepEqual(await tf.awaitVisible(TOKEN, { timeoutMs: 30_000, onStalled: (s) => stalls.push(s) }), {
        visible: false,
        reason,
        blockedBy: 'order_summary',
      });
      assert.equal(asks.length, 1, 'not asked again');
      assert.deepEqual(stalls, []);
    }
  });

  it('a reason this build does not know ends it at once (no spinning on a newer server), and the error says to update', async () => {
    const { tf, asks } = scripted(() => ({ visible: false, reason: 'REBUILDING', blockedBy: 'order_summary' }));
    const answer = await tf.awaitVisible(TOKEN, { timeoutMs: 30_000 });
    assert.deepEqual(answer, { visible: false, reason: 'REBUILDING', blockedBy: 'order_summary' });
    assert.equal(asks.length, 1);
    const error = notVisibleError(TOKEN, answer);
    assert.equal(error.code, 'NOT_VISIBLE_YET');
    assert.match(error.message, /REBUILDING.*does not know.*update @twofold\/client/);
  });

  it('an aborted wait rejects ABORTED and asks no more', async () => {
    const controller = new AbortController();
    const { tf, asks } = scripted(({ wait }) => after(Math.min(wait, 20), STALLED));
    const waiting = tf.awaitVisible(TOKEN, { timeoutMs: 30_000, signal: controller.signal, onStalled: () => controller.abort() });
    await assert.rejects(waiting, (e) => e instanceof TwofoldError && e.code === 'ABORTED' && e.token === TOKEN);
    assert.equal(asks.length, 1);
  });

  it('a listener that throws ends the wait with its error', async () => {
    const { tf } = scripted(() => STALLED);
    await assert.rejects(
      tf.awaitVisible(TOKEN, {
        timeoutMs: 30_000,
        onStalled: () => {
          throw new Error('listener bug');
        },
      }),
      /listener bug/,
    );
  });

  it('ensureVisible rejects with the mapped error; command waits with it', async () => {
    const { tf } = scripted(({ wait }) => after(wait, STALLED));
    await assert.rejects(tf.ensureVisible(TOKEN, { timeoutMs: 50, data: { placeOrder: { id: 'o' } } }), (e) => {
      assert.equal(e.code, 'NOT_VISIBLE_YET');
      assert.equal(e.reason, 'TIMED_OUT');
      assert.equal(e.blockedBy, 'order_summary');
      assert.deepEqual(e.waitingOn, WAITING_ON);
      assert.deepEqual(e.data, { placeOrder: { id: 'o' } });
      return true;
    });
  });
});

describe('the one mapping from a write that is not visible to its error', () => {
  it('every reason has a meaning', () => {
    assert.equal(reasonMeaning('TIMED_OUT'), 'pending');
    assert.equal(reasonMeaning('STALLED'), 'stalled');
    assert.equal(reasonMeaning('PROJECTION_STOPPED'), 'operator');
    assert.equal(reasonMeaning('DEAD_LETTERED'), 'operator');
    assert.equal(reasonMeaning('SOMETHING_NEW'), 'unknown');
  });

  it('TIMED_OUT and STALLED are NOT_VISIBLE_YET (it may still become visible); a stopped view or a dead letter NOT_PROJECTED', () => {
    const timedOut = notVisibleError(TOKEN, { visible: false, reason: 'TIMED_OUT' });
    assert.equal(timedOut.code, 'NOT_VISIBLE_YET');
    assert.equal(timedOut.reason, 'TIMED_OUT');
    assert.equal(timedOut.blockedBy, undefined);
    assert.equal(timedOut.token, TOKEN);
    assert.match(timedOut.message, /may still become visible/);

    const stalled = notVisibleError(TOKEN, STALLED);
    assert.equal(stalled.code, 'NOT_VISIBLE_YET', 'a stall is no operator matter');
    assert.equal(stalled.reason, 'TIMED_OUT');
    assert.equal(stalled.blockedBy, 'order_summary');
    assert.deepEqual(stalled.waitingOn, WAITING_ON);
    assert.match(stalled.message, /order_summary is stalled, waiting on SQLITE_WRITE_LOCK: BEGIN IMMEDIATE/);

    for (const reason of ['PROJECTION_STOPPED', 'DEAD_LETTERED']) {
      const error = notVisibleError(TOKEN, { visible: false, reason, blockedBy: 'order_summary' }, { x: 1 });
      assert.equal(error.code, 'NOT_PROJECTED');
      assert.equal(error.reason, reason);
      assert.equal(error.blockedBy, 'order_summary');
      assert.deepEqual(error.data, { x: 1 });
      assert.match(error.message, new RegExp(`${reason} in order_summary; an operator must act`));
    }
  });

  it("consistentWith's errors carry the view: blockedBy (STALLED) or projection (NOT_PROJECTED)", () => {
    const stalled = TwofoldError.fromErrors([{ message: 'm', extensions: { code: 'NOT_VISIBLE_YET', reason: 'STALLED', blockedBy: 'order_summary', waitingOn: 'LOCK' } }]);
    assert.equal(stalled.reason, 'STALLED');
    assert.equal(stalled.blockedBy, 'order_summary');
    const stopped = TwofoldError.fromErrors([{ message: 'm', extensions: { code: 'NOT_PROJECTED', reason: 'PROJECTION_STOPPED', projection: 'daily_sales' } }]);
    assert.equal(stopped.blockedBy, 'daily_sales');
  });
});

describe('which requests tf.fetch sends again after a 503 (the document parsed, not matched)', () => {
  const body = (query, variables = {}, operationName) => ({ query, variables, operationName });
  it('queries and subscriptions, always', () => {
    assert.equal(retryableRequest(body('{ orders { edges { cursor } } }')), true);
    assert.equal(retryableRequest(body('query Q { viewer { role } }')), true);
    assert.equal(retryableRequest(body('subscription { writeVisible(token: "1.1") { visible } }')), true);
  });

  it('a mutation only when every root field carries a commandId, inline or in its variable', () => {
    const place = 'mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { id token } }';
    assert.equal(retryableRequest(body(place, { input: { customerId: 'c' } })), false);
    assert.equal(retryableRequest(body(place, { input: { customerId: 'c', commandId: 'k' } })), true);
    assert.equal(retryableRequest(body('mutation { cancelOrder(input: {orderId: "o", commandId: "k"}) { token } }')), true);
    assert.equal(retryableRequest(body('mutation($k: String) { cancelOrder(input: {orderId: "o", commandId: $k}) { token } }', { k: 'k' })), true);
    assert.equal(retryableRequest(body('mutation($k: String) { cancelOrder(input: {orderId: "o", commandId: $k}) { token } }', {})), false);
    // The second field carries none: sent again, it would act twice.
    assert.equal(
      retryableRequest(body('mutation { a: cancelOrder(input: {orderId: "o", commandId: "k"}) { token } b: cancelOrder(input: {orderId: "p"}) { token } }')),
      false,
    );
    assert.equal(retryableRequest(body('mutation { retryDeadLetter(id: "1") { token } }')), false, 'no input, no commandId');
  });

  it('a mutation a pattern would miss is still one: a comment or a fragment first, or named among several operations', () => {
    const hidden = [
      '# place an order\nmutation($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }',
      'fragment F on Created { id }\nmutation($input: PlaceOrderInput!) { placeOrder(input: $input) { ...F } }',
    ];
    for (const query of hidden) assert.equal(retryableRequest(body(query, { input: {} })), false, query);
    const several = 'query Q { viewer { role } } mutation M($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }';
    assert.equal(retryableRequest(body(several, { input: {} }, 'M')), false);
    assert.equal(retryableRequest(body(several, { input: {} }, 'Q')), true);
    // The word "mutation" in a query's string is no mutation.
    assert.equal(retryableRequest(body('{ products(search: "mutation") { nodes { id } } }')), true);
  });

  it('no document text (a persisted hash or id), or one that does not parse: not sent again', () => {
    assert.equal(retryableRequest({ extensions: { persistedQuery: { version: 1, sha256Hash: 'ab' } } }), false);
    assert.equal(retryableRequest({ documentId: 'sha256:ab' }), false);
    assert.equal(retryableRequest(body('mutation {')), false);
  });
});
