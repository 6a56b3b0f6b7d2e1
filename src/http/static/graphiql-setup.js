// Starts GraphiQL (React 18 UMD build, vendored under /assets/vendor/) on the
// Twofold endpoint. Loaded as a file, never inline, so the page runs under a
// Content-Security-Policy without 'unsafe-inline'.
(function () {
  'use strict';

  var scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  var baseFetcher = window.GraphiQL.createFetcher({
    url: '/graphql',
    // GraphiQL's bundle carries the graphql-ws client: subscriptions go over
    // the graphql-transport-ws protocol, with the headers below as the
    // connection_init payload.
    subscriptionUrl: scheme + '//' + window.location.host + '/graphql/ws',
  });

  // GraphiQL's introspection query nests `ofType` nine deep, three more than
  // the server's query depth limit (--max-depth, default 12) allows, so the
  // schema (docs, autocompletion) would never load. Six levels describe any
  // type up to [[T!]!]! and stay within the limit.
  var TYPE_REF_LEVELS = 6;

  function typeRefFragment(levels) {
    var inner = 'kind name';
    for (var i = 0; i < levels; i += 1) inner = 'kind name ofType { ' + inner + ' }';
    return 'fragment TypeRef on __Type { ' + inner + ' }';
  }

  /** The query with its `fragment TypeRef` (brace-matched) replaced, or as it was. */
  function withShallowTypeRef(query) {
    var start = query.indexOf('fragment TypeRef on __Type');
    if (start < 0) return query;
    var open = query.indexOf('{', start);
    var depth = 0;
    for (var i = open; i < query.length; i += 1) {
      if (query[i] === '{') depth += 1;
      else if (query[i] === '}') {
        depth -= 1;
        if (depth === 0) return query.slice(0, start) + typeRefFragment(TYPE_REF_LEVELS) + query.slice(i + 1);
      }
    }
    return query;
  }

  function fetcher(params, options) {
    if (params && params.operationName === 'IntrospectionQuery' && typeof params.query === 'string') {
      params = Object.assign({}, params, { query: withShallowTypeRef(params.query) });
    }
    return baseFetcher(params, options);
  }

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
