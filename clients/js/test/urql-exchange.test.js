// twofoldExchange on its own, with a fake forward (the exchanges after it)
// and a client whose visibility waits are answered here: what it sends on,
// what it holds back, and that a torn-down mutation delivers nothing late.
// (The exchange against the real server, with urql's own cache and fetch
// exchanges: integrations.test.js.)
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRequest, gql, makeOperation } from '@urql/core';
import { filter, makeSubject, map, pipe, subscribe } from 'wonka';
import { print } from 'graphql';
import { createClient, TwofoldError } from '../dist/index.js';
import { twofoldExchange } from '../dist/urql.js';

const PLACE = gql`mutation Place($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }`;
const LIST = gql`query List { orders(first: 5) { edges { node { id } } } }`;
const CONTEXT = { url: 'http://127.0.0.1:9/graphql', requestPolicy: 'network-only' };

function operation(kind, query, variables, key) {
  const request = createRequest(query, variables);
  return makeOperation(kind, { ...request, key: key ?? request.key }, CONTEXT);
}

function teardown(op) {
  return makeOperation('teardown', op, op.context);
}

/** Settles once the microtasks and timers queued so far have run. */
const tick = () => new Promise((ok) => setTimeout(ok, 0));

/**
 * The exchange over a fake forward: every operation it sends on is kept
 * in `forwarded`, and a mutation is answered `{ placeOrder: { id, token } }`
 * at once (a query: an empty list). `waits` holds each visibility wait
 * the exchange starts, for the test to settle (`resolve(visibility)`).
 */
function harness() {
  const tf = createClient({ url: CONTEXT.url });
  const waits = [];
  tf.awaitVisible = (token, options) =>
    new Promise((resolve) => {
      waits.push({ token, options, resolve });
    });
  const forwarded = [];
  let answered = 0;
  const forward = (ops$) =>
    pipe(
      ops$,
      filter((op) => {
        forwarded.push(op);
        return op.kind !== 'teardown';
      }),
      map((op) => ({
        operation: op,
        data: op.kind === 'mutation' ? { placeOrder: { id: `o${++answered}`, token: `5.${answered}` } } : { orders: { edges: [] } },
        stale: false,
        hasNext: false,
      })),
    );
  const { source, next } = makeSubject();
  const results = [];
  const { unsubscribe } = pipe(
    twofoldExchange(tf)({ forward, client: {}, dispatchDebug: () => {} })(source),
    subscribe((result) => results.push(result)),
  );
  return { tf, waits, forwarded, results, send: next, unsubscribe };
}

describe('twofoldExchange, with a fake forward', () => {
  it("sends a mutation on with a commandId and its token selected, and holds its result until the write is visible", async () => {
    const h = harness();
    const op = operation('mutation', PLACE, { input: { customerId: 'c' } });
    h.send(op);
    await tick();
    assert.equal(h.forwarded.length, 1);
    const sent = h.forwarded[0];
    assert.equal(sent.key, op.key);
    assert.match(sent.variables.input.commandId, /^[0-9a-f-]{36}$/);
    assert.match(print(sent.query), /placeOrder\(input: \$input\) \{\s+id\s+token/);
    assert.equal(h.waits.length, 1, 'waiting for its write');
    assert.equal(h.waits[0].token, '5.1');
    assert.equal(h.tf.sessionToken, '5.1', 'noted at once, for the refetches');
    assert.deepEqual(h.results, [], 'held back');
    h.waits[0].resolve({ visible: true });
    await tick();
    assert.equal(h.results.length, 1);
    assert.equal(h.results[0].error, undefined);
    assert.equal(h.results[0].data.placeOrder.id, 'o1');
    h.unsubscribe();
  });

  it("a query carries the session's token; a query before any write carries none", async () => {
    const h = harness();
    h.send(operation('query', LIST, {}));
    h.tf.noteToken('9.3');
    h.send(operation('query', LIST, {}, 77));
    await tick();
    assert.deepEqual(
      h.forwarded.map((op) => op.extensions?.consistentWith),
      [undefined, '9.3'],
    );
    assert.equal(h.results.length, 2, 'query results pass at once');
    h.unsubscribe();
  });

  it('a write that will not become visible comes back as the networkError command would reject with', async () => {
    const h = harness();
    h.send(operation('mutation', PLACE, { input: {} }));
    await tick();
    h.waits[0].resolve({ visible: false, reason: 'PROJECTION_STOPPED', blockedBy: 'order_summary' });
    await tick();
    const error = h.results[0].error.networkError;
    assert.ok(error instanceof TwofoldError);
    assert.equal(error.code, 'NOT_PROJECTED');
    assert.equal(error.blockedBy, 'order_summary');
    assert.equal(error.token, '5.1');
    assert.deepEqual(error.data, { placeOrder: { id: 'o1', token: '5.1' } });
    h.unsubscribe();
  });

  it('a mutation torn down while its write is awaited delivers no late result, and its wait is aborted', async () => {
    const h = harness();
    const op = operation('mutation', PLACE, { input: {} });
    h.send(op);
    await tick();
    assert.equal(h.waits.length, 1);
    const { signal } = h.waits[0].options;
    h.send(teardown(op));
    await tick();
    assert.equal(signal.aborted, true, 'the wait (its writeVisible subscription) ends at the teardown');
    h.waits[0].resolve({ visible: true });
    await tick();
    assert.deepEqual(h.results, [], 'nothing after the teardown');
    assert.equal(h.forwarded.at(-1).kind, 'teardown', 'the teardown is sent on (fetchExchange aborts with it)');
    h.unsubscribe();
  });

  it('a mutation torn down before it was prepared is never sent', async () => {
    const h = harness();
    const op = operation('mutation', PLACE, { input: {} });
    // prepareCommand is asynchronous: the teardown arrives before it settles.
    h.send(op);
    h.send(teardown(op));
    await tick();
    assert.deepEqual(h.forwarded.map((o) => o.kind), ['teardown']);
    assert.deepEqual(h.results, []);
    h.unsubscribe();
  });

  it("another operation's teardown leaves a mutation's wait alone", async () => {
    const h = harness();
    h.send(operation('mutation', PLACE, { input: {} }, 1));
    await tick();
    h.send(teardown(operation('query', LIST, {}, 2)));
    await tick();
    assert.equal(h.waits[0].options.signal.aborted, false);
    h.waits[0].resolve({ visible: true });
    await tick();
    assert.equal(h.results.length, 1);
    h.unsubscribe();
  });
});
