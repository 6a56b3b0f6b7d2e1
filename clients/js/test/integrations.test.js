// Session consistency across instances, and the urql exchange and the
// Apollo link with the real @urql/core and @apollo/client: a placeOrder sent
// through them, then the framework's own refetch of an `orders` list, shows
// the new order on that first refetch. On PostgreSQL two `serve` processes
// share one database: A (projections and API) takes the mutations, B (API
// only) the queries; on SQLite one server takes both.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { Client, cacheExchange, fetchExchange, gql as urqlGql } from '@urql/core';
import { pipe, subscribe } from 'wonka';
import { ApolloClient, InMemoryCache, HttpLink, from, gql as apolloGql } from '@apollo/client/core/index.js';
import { BACKENDS, database, startServer, seed, orderInput, orderIds, PLACE_ORDER } from './helpers.js';
import { createClient, operationKind } from '../dist/index.js';
import { twofoldExchange } from '../dist/urql.js';
import { TwofoldLink } from '../dist/apollo.js';

const ROUNDS = { postgres: 100, sqlite: 25 };
const LIST = `query Orders($c: ID) { orders(first: 100, customerId: $c) { edges { node { id status } } } }`;

/**
 * Mutations to `writer`, everything else to `reader`, through a session
 * client's `fetch` (its bounded retry of a 503 a busy server sheds with);
 * counts the requests the framework sent (not the retries).
 */
function routingSession(writer, reader) {
  const counts = { queries: 0, mutations: 0 };
  const isMutation = (init) => {
    if (typeof init.body !== 'string') return false;
    const { query, operationName } = JSON.parse(init.body);
    return typeof query === 'string' && operationKind(query, operationName) === 'mutation';
  };
  const route = (url, init = {}) => {
    // urql sends queries by GET (the request, extensions too, in the URL).
    const href = String(url);
    const search = href.includes('?') ? href.slice(href.indexOf('?')) : '';
    return fetch(`${isMutation(init) ? writer : reader}${search}`, init);
  };
  const session = createClient({ url: writer, webSocketImpl: WebSocket, fetch: route });
  const counted = (url, init = {}) => {
    counts[isMutation(init) ? 'mutations' : 'queries'] += 1;
    return session.fetch(url, init);
  };
  return { session, fetch: counted, counts };
}

for (const backend of BACKENDS) {
  describe(`across instances and frameworks (${backend})`, () => {
    let db;
    let a;
    let b;
    let tf;
    let ids;
    before(async () => {
      db = await database(backend);
      a = await startServer(db);
      b = backend === 'postgres' ? await startServer(db, { args: ['--role', 'api'] }) : a;
      tf = createClient({ url: a.graphql, webSocketImpl: WebSocket });
      ids = await seed(tf);
    });
    after(async () => {
      tf?.dispose();
      if (b && b !== a) await b.stop();
      await a?.stop();
      await db?.drop();
    });

    it('a session reads its own writes on the other instance', async () => {
      const writer = createClient({ url: a.graphql, webSocketImpl: WebSocket });
      const reader = createClient({ url: b.graphql, webSocketImpl: WebSocket });
      try {
        for (let i = 0; i < 20; i++) {
          // At commit only: no wait for visibility on the client's side.
          const placed = await writer.command(PLACE_ORDER, { input: orderInput(ids) }, { until: 'accepted' });
          reader.noteToken(writer.sessionToken);
          const { data } = await reader.query(LIST, { c: ids.customerId });
          assert.ok(orderIds(data).includes(placed.data.placeOrder.id), `round ${i}`);
        }
      } finally {
        writer.dispose();
        reader.dispose();
      }
    });

    it(`urql: the first refetch after a placeOrder through twofoldExchange shows it, ${ROUNDS[backend]} of ${ROUNDS[backend]}`, async () => {
      const { session, fetch: route, counts } = routingSession(a.graphql, b.graphql);
      const urql = new Client({ url: a.graphql, fetch: route, exchanges: [twofoldExchange(session), cacheExchange, fetchExchange] });
      const results = [];
      let notify = () => {};
      const { unsubscribe } = pipe(
        urql.query(urqlGql(LIST), { c: ids.customerId }, { additionalTypenames: ['OrderSummary'] }),
        subscribe((result) => {
          results.push(result);
          notify();
        }),
      );
      const settled = (from) =>
        new Promise((ok) => {
          const check = () => {
            const fresh = results.slice(from).find((r) => !r.stale && (r.data || r.error));
            if (fresh) ok(fresh);
            else notify = check;
          };
          check();
        });
      try {
        const first = await settled(0);
        assert.equal(first.error, undefined, String(first.error));
        const place = urqlGql(PLACE_ORDER);
        for (let i = 0; i < ROUNDS[backend]; i++) {
          const mark = results.length;
          const queriesBefore = counts.queries;
          const placed = await urql.mutation(place, { input: orderInput(ids) }, { additionalTypenames: ['OrderSummary'] }).toPromise();
          assert.equal(placed.error, undefined, `round ${i}: ${placed.error}`);
          const refetched = await settled(mark);
          assert.equal(refetched.error, undefined, `round ${i}: ${refetched.error}`);
          assert.equal(counts.queries, queriesBefore + 1, `round ${i}: one refetch`);
          assert.ok(orderIds(refetched.data).includes(placed.data.placeOrder.id), `round ${i}: the first refetch shows the order`);
        }
      } finally {
        unsubscribe();
        session.dispose();
      }
    });

    it(`Apollo: refetchQueries after a placeOrder through TwofoldLink show it, ${ROUNDS[backend]} of ${ROUNDS[backend]}`, async () => {
      const { session, fetch: route, counts } = routingSession(a.graphql, b.graphql);
      const apollo = new ApolloClient({
        cache: new InMemoryCache(),
        link: from([new TwofoldLink(session), new HttpLink({ uri: a.graphql, fetch: route })]),
      });
      const list = apolloGql(LIST);
      const place = apolloGql(PLACE_ORDER);
      try {
        await apollo.query({ query: list, variables: { c: ids.customerId } });
        for (let i = 0; i < ROUNDS[backend]; i++) {
          const queriesBefore = counts.queries;
          const placed = await apollo.mutate({
            mutation: place,
            variables: { input: orderInput(ids) },
            refetchQueries: [{ query: list, variables: { c: ids.customerId } }],
            awaitRefetchQueries: true,
          });
          assert.equal(counts.queries, queriesBefore + 1, `round ${i}: one refetch`);
          const cached = apollo.readQuery({ query: list, variables: { c: ids.customerId } });
          assert.ok(orderIds(cached).includes(placed.data.placeOrder.id), `round ${i}: the refetch shows the order`);
        }
      } finally {
        apollo.stop();
        session.dispose();
      }
    });
  });
}
