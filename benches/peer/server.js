#!/usr/bin/env node
// The peer of the Twofold benchmark: PostGraphile 4.14 with the
// connection-filter plugin, a CRUD GraphQL API generated from the `public`
// schema (the normalized write tables), configured the way a team would
// deploy it: no schema watching, no default mutations, no per-query log.
//
//   node server.js --port 5050 --database-url postgres://postgres@127.0.0.1:5432/db
//   PORT=5050 DATABASE_URL=postgres://... node server.js
//
// Optional: --pool N / PG_POOL_SIZE (default 8) and --host / HOST
// (default 127.0.0.1). Prints `PEER READY http://HOST:PORT/graphql` once the
// schema is built and the port is open; exits non-zero if either fails.
"use strict";

const http = require("http");
const { Pool } = require("pg");
const { postgraphile } = require("postgraphile");
const ConnectionFilterPlugin = require("postgraphile-plugin-connection-filter");

function arg(name, envName, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i !== -1 && i + 1 < process.argv.length) return process.argv[i + 1];
  const inline = process.argv.find((a) => a.startsWith(`--${name}=`));
  if (inline) return inline.slice(name.length + 3);
  return process.env[envName] || fallback;
}

const databaseUrl = arg("database-url", "DATABASE_URL");
const port = Number(arg("port", "PORT", "5050"));
const host = arg("host", "HOST", "127.0.0.1");
const poolSize = Number(arg("pool", "PG_POOL_SIZE", "8"));
if (!databaseUrl || !Number.isInteger(port) || !Number.isInteger(poolSize) || poolSize < 1) {
  console.error("usage: node server.js --port PORT --database-url postgres://USER@HOST:PORT/DB [--pool N]");
  process.exit(2);
}

const pool = new Pool({ connectionString: databaseUrl, max: poolSize });
pool.on("error", (e) => console.error("pg pool error:", e.message));

const middleware = postgraphile(pool, "public", {
  appendPlugins: [ConnectionFilterPlugin],
  watchPg: false,
  disableDefaultMutations: true,
  dynamicJson: true,
  disableQueryLog: true,
  graphiql: false,
  enhanceGraphiql: false,
  enableCors: false,
  setofFunctionsContainNulls: false,
  ignoreRBAC: true,
  retryOnInitFail: false,
  showErrorStack: false,
});

const server = http.createServer(middleware);
server.keepAliveTimeout = 90_000;
server.headersTimeout = 95_000;

middleware
  .getGraphQLSchema()
  .then(() => {
    server.listen(port, host, () => {
      console.log(`PEER READY http://${host}:${port}/graphql (PostGraphile ${require("postgraphile/package.json").version}, pool ${poolSize})`);
    });
  })
  .catch((e) => {
    console.error("PostGraphile could not build its schema:", e);
    process.exit(1);
  });

server.on("error", (e) => {
  console.error("HTTP server error:", e.message);
  process.exit(1);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close();
    pool.end().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2_000).unref();
  });
}
