// TwofoldLink's tests, run once per Apollo Client major version: by
// apollo.test.js on 3 (`@apollo/client`), by apollo4.test.js on 4 (the
// `@apollo/client-4` alias, which its resolve hook puts in the place of
// `@apollo/client`). First the link on its own with a fake forward (the
// links after it), then through a real ApolloClient against the server.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { print } from 'graphql';
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, Observable, from, gql } from '@apollo/client/core/index.js';
import { createClient, TwofoldError } from '../dist/index.js';
import { TwofoldLink } from '../dist/apollo.js';
import { app, seed, orderInput, orderIds, PLACE_ORDER } from './helpers.js';

const PLACE = gql`mutation Place($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }`;
const LIST = gql`query List($c: ID) { orders(first: 100, customerId: $c) { edges { node { id status } } } }`;

/** An operation as both versions' links see one: the fields TwofoldLink reads, and a context. */
function operation(query, variables = {}) {
  let context = {};
  return {
    query,
    variables,
    operationName: query.definitions.find((d) => d.kind === 'OperationDefinition')?.name?.value,
    extensions: {},
    setContext(next) {
      context = { ...context, ...(typeof next === 'function' ? next(context) : next) };
      return context;
    },
    getContext: () => context,
  };
}

const tick = () => new Promise((ok) => setTimeout(ok, 0));

/**
 * The link over a fake forward that answers a mutation with a token at
 * once, and a client whose visibility waits the test settles
 * (`waits[i].resolve(visibility)`); `events` records what the link emits.
 */
function harness(query, variables) {
  const tf = createClient({ url: 'http://127.0.0.1:9/graphql' });
  const waits = [];
  tf.awaitVisible = (token, options) => new Promise((resolve) => waits.push({ token, options, resolve }));
  const forwarded = [];
  const forward = (op) =>
    new Observable((observer) => {
      forwarded.push({ query: print(op.query), variables: op.variables, extensions: op.extensions, context: op.getContext() });
      const isMutation = /placeOrder/.test(print(op.query));
      observer.next({ data: isMutation ? { placeOrder: { id: 'o1', token: '5.1' } } : { orders: { edges: [] } } });
      observer.complete();
    });
  const events = [];
  const link = new TwofoldLink(tf);
  const subscription = link.request(operation(query, variables), forward).subscribe({
    next: (value) => events.push(['next', value]),
    error: (error) => events.push(['error', error]),
    complete: () => events.push(['complete']),
  });
  return { tf, waits, forwarded, events, subscription };
}

export function apolloSuite(major) {
  describe(`TwofoldLink on Apollo Client ${major}, with a fake forward`, () => {
    it(`runs on Apollo Client ${major}`, async () => {
      const { default: pkg } = await import('@apollo/client/package.json', { with: { type: 'json' } });
      assert.equal(pkg.version.split('.')[0], String(major), `@apollo/client is ${pkg.version}`);
      // The built link is that version's link, and answers with that version's Observable.
      const link = new TwofoldLink(createClient({ url: 'http://127.0.0.1:9/graphql' }));
      assert.ok(link instanceof ApolloLink);
      const answer = link.request(operation(PLACE, { input: {} }), () => new Observable((o) => o.complete()));
      assert.ok(answer instanceof Observable);
    });

    it('sends a mutation on with a commandId and its token, holds the result until visible, then completes', async () => {
      const h = harness(PLACE, { input: { customerId: 'c' } });
      await tick();
      assert.equal(h.forwarded.length, 1);
      assert.match(h.forwarded[0].variables.input.commandId, /^[0-9a-f-]{36}$/);
      assert.match(h.forwarded[0].query, /placeOrder\(input: \$input\) \{\s+id\s+token/);
      assert.equal(h.waits[0]?.token, '5.1');
      assert.equal(h.tf.sessionToken, '5.1');
      assert.deepEqual(h.events, [], 'held back');
      h.waits[0].resolve({ visible: true });
      await tick();
      assert.deepEqual(h.events, [['next', { data: { placeOrder: { id: 'o1', token: '5.1' } } }], ['complete']]);
    });

    it('a write that will not become visible is the error command would reject with, carrying the data', async () => {
      const h = harness(PLACE, { input: {} });
      await tick();
      h.waits[0].resolve({ visible: false, reason: 'DEAD_LETTERED', blockedBy: 'order_summary' });
      await tick();
      assert.equal(h.events.length, 1, JSON.stringify(h.events));
      const [kind, error] = h.events[0];
      assert.equal(kind, 'error');
      assert.ok(error instanceof TwofoldError);
      assert.equal(error.code, 'NOT_PROJECTED');
      assert.equal(error.reason, 'DEAD_LETTERED');
      assert.equal(error.token, '5.1');
      assert.deepEqual(error.data, { placeOrder: { id: 'o1', token: '5.1' } });
    });

    it('unsubscribed while the write is awaited: the wait is aborted and nothing is delivered late', async () => {
      const h = harness(PLACE, { input: {} });
      await tick();
      const { signal } = h.waits[0].options;
      h.subscription.unsubscribe();
      assert.equal(signal.aborted, true);
      h.waits[0].resolve({ visible: true });
      await tick();
      assert.deepEqual(h.events, []);
    });

    it("a query carries the session's token and turns on includeExtensions", async () => {
      const h = harness(LIST, {});
      await tick();
      assert.deepEqual(h.forwarded[0].extensions, {}, 'no token yet');
      h.tf.noteToken('9.3');
      const second = new TwofoldLink(h.tf);
      const seen = [];
      const op = operation(LIST, {});
      second.request(op, (o) => new Observable((observer) => {
        seen.push({ extensions: o.extensions, context: o.getContext() });
        observer.complete();
      })).subscribe({});
      assert.deepEqual(seen, [{ extensions: { consistentWith: '9.3' }, context: { http: { includeExtensions: true } } }]);
    });

    it('a mutation is known by parsing its document: a fragment before it does not hide it', async () => {
      const h = harness(gql`
        fragment Made on Created { id }
        mutation Place($input: PlaceOrderInput!) { placeOrder(input: $input) { ...Made } }
      `, { input: {} });
      await tick();
      assert.match(h.forwarded[0].variables.input.commandId ?? '', /^[0-9a-f-]{36}$/, 'prepared as a command');
      assert.equal(h.waits.length, 1, 'and its result held');
    });
  });

  describe(`TwofoldLink on Apollo Client ${major}, against the server (sqlite)`, () => {
    let server;
    let tf;
    let ids;
    before(async () => {
      server = await app('sqlite');
      tf = server.client();
      ids = await seed(tf);
    });
    after(async () => {
      tf?.dispose();
      await server?.stop();
    });

    it('refetchQueries after a placeOrder through the link show it, 10 of 10', async () => {
      const apollo = new ApolloClient({
        cache: new InMemoryCache(),
        link: from([new TwofoldLink(tf), new HttpLink({ uri: server.graphql, fetch: tf.fetch })]),
      });
      const place = gql(PLACE_ORDER);
      try {
        await apollo.query({ query: LIST, variables: { c: ids.customerId } });
        for (let i = 0; i < 10; i++) {
          const placed = await apollo.mutate({
            mutation: place,
            variables: { input: orderInput(ids) },
            refetchQueries: [{ query: LIST, variables: { c: ids.customerId } }],
            awaitRefetchQueries: true,
          });
          const cached = apollo.readQuery({ query: LIST, variables: { c: ids.customerId } });
          assert.ok(orderIds(cached).includes(placed.data.placeOrder.id), `round ${i}: the refetch shows the order`);
        }
      } finally {
        apollo.stop();
      }
    });

    it("a write that will not become visible rejects mutate with the link's TwofoldError", async () => {
      // A client whose waits give up at once: every write is "not visible yet" to it.
      const hasty = server.client({ timeoutMs: 0 });
      hasty.awaitVisible = async () => ({ visible: false, reason: 'PROJECTION_STOPPED', blockedBy: 'order_summary' });
      const apollo = new ApolloClient({
        cache: new InMemoryCache(),
        link: from([new TwofoldLink(hasty), new HttpLink({ uri: server.graphql, fetch: hasty.fetch })]),
      });
      try {
        await assert.rejects(apollo.mutate({ mutation: gql(PLACE_ORDER), variables: { input: orderInput(ids) } }), (e) => {
          // Apollo 3 wraps a link's error in an ApolloError (networkError); 4 passes it on.
          const error = e instanceof TwofoldError ? e : e.networkError;
          assert.ok(error instanceof TwofoldError, `${e?.name}: ${e?.message}`);
          assert.equal(error.code, 'NOT_PROJECTED');
          assert.equal(error.blockedBy, 'order_summary');
          return true;
        });
      } finally {
        apollo.stop();
        hasty.dispose();
      }
    });
  });
}
