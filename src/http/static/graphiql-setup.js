// Starts GraphiQL (React 18 UMD build, vendored under /assets/vendor/) on the
// Twofold endpoint. Loaded as a file, never inline, so the page runs under a
// Content-Security-Policy without 'unsafe-inline'.
(function () {
  'use strict';

  var scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  // GraphiQL's own introspection query nests `ofType` nine levels deep; the
  // server measures introspection by its own depth rule (24 levels), so it
  // is sent as GraphiQL writes it.
  var fetcher = window.GraphiQL.createFetcher({
    url: '/graphql',
    // GraphiQL's bundle carries the graphql-ws client: subscriptions go over
    // the graphql-transport-ws protocol, with the headers below as the
    // connection_init payload.
    subscriptionUrl: scheme + '//' + window.location.host + '/graphql/ws',
  });

  var defaultQuery = [
    '# Twofold: GraphiQL served by the binary itself (nothing is loaded from the internet).',
    '#',
    '# Run with Ctrl-Enter. Subscriptions run over the WebSocket endpoint /graphql/ws, e.g.',
    '#   subscription { projectionUpdated { projection token streamIds } }',
    '#',
    '# To send a token, put it in the Headers tab below as',
    '#   "Authorization": "Bearer <token from: twofold token --role customer --customer-id ID>"',
    '',
    '{',
    '  projections { name status checkpoint lag }',
    '}',
    '',
  ].join('\n');

  // GraphiQL parses the headers with JSON.parse, so a // comment would make
  // every request fail with "Headers are invalid JSON". The example is a
  // harmless header instead; rename the key to "Authorization" to use it.
  var defaultHeaders = [
    '{',
    '  "Authorization-Example": "Bearer <token from: twofold token --role customer --customer-id ID>"',
    '}',
  ].join('\n');

  var root = window.ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(
    window.React.createElement(window.GraphiQL, {
      fetcher: fetcher,
      defaultQuery: defaultQuery,
      defaultHeaders: defaultHeaders,
      defaultEditorToolsVisibility: 'headers',
      shouldPersistHeaders: false,
    })
  );
})();
