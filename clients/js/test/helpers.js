// Starts real `twofold serve` processes on free ports, each on its own
// database (a temp SQLite file, or a fresh PostgreSQL database dropped after),
// and talks to them with the library under test.
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import pg from 'pg';
import WebSocket from 'ws';
import { createClient } from '../dist/index.js';

const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(here, '../../..');
export const BIN = resolve(ROOT, process.env.TWOFOLD_BIN ?? 'target/debug/twofold');
const PG_BASE = (process.env.TWOFOLD_TEST_PG_URL ?? '').trim().replace(/\/+$/, '');
if (!PG_BASE && process.env.TWOFOLD_REQUIRE_PG === '1') {
  throw new Error('TWOFOLD_REQUIRE_PG=1 but TWOFOLD_TEST_PG_URL is not set');
}
if (!existsSync(BIN)) throw new Error(`no twofold binary at ${BIN}: cargo build first, or set TWOFOLD_BIN`);

/** The backends to run on: SQLite always, PostgreSQL when TWOFOLD_TEST_PG_URL is set. */
export const BACKENDS = PG_BASE ? ['sqlite', 'postgres'] : ['sqlite'];
export const HAS_PG = Boolean(PG_BASE);

export function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

/** A database for one test: `{ url, drop() }`. */
export async function database(backend) {
  if (backend === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'twofold-js-'));
    return { url: `sqlite://${join(dir, 'twofold.db')}?mode=rwc`, backend, drop: async () => rmSync(dir, { recursive: true, force: true }) };
  }
  const name = `twofold_js_${randomUUID().replace(/-/g, '')}`;
  const admin = new pg.Client({ connectionString: `${PG_BASE}/postgres` });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  return {
    url: `${PG_BASE}/${name}`,
    backend,
    drop: async () => {
      const again = new pg.Client({ connectionString: `${PG_BASE}/postgres` });
      await again.connect();
      await again.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await again.end();
    },
  };
}

/** Runs `twofold serve`; resolves once /healthz says it has started. */
export async function startServer(db, { env = {}, args = [] } = {}) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const childEnv = { ...process.env, ...env };
  for (const name of ['TWOFOLD_JWT_SECRET', 'TWOFOLD_JWKS_FILE', 'TWOFOLD_ADMIN_TOKEN']) {
    if (!(name in env)) delete childEnv[name];
  }
  const child = spawn(
    BIN,
    ['serve', '--bind', `127.0.0.1:${port}`, '--database-url', db.url, ...args],
    { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  const exited = new Promise((ok) => child.once('exit', (code) => ok(code)));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`twofold serve exited (${child.exitCode}):\n${log}`);
    try {
      // /healthz answers while the server still starts ("starting": true): wait for the service.
      const r = await fetch(`${url}/healthz`);
      if (r.ok && !(await r.json()).starting) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`twofold serve did not answer /healthz in 30 s:\n${log}`);
    }
    await new Promise((ok) => setTimeout(ok, 50));
  }
  return {
    url,
    graphql: `${url}/graphql`,
    log: () => log,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}

/** A server on a fresh database; `stop()` stops it and drops the database. */
export async function app(backend, options) {
  const db = await database(backend);
  const server = await startServer(db, options);
  return {
    ...server,
    db,
    client: (extra = {}) => createClient({ url: server.graphql, webSocketImpl: WebSocket, ...extra }),
    async stop() {
      await server.stop();
      await db.drop();
    },
  };
}

/** A bearer token from `twofold token`, signed with `secret`. */
export async function mint(secret, role, { customerId, ttl = '1h' } = {}) {
  const args = ['token', '--role', role, '--ttl', ttl];
  if (customerId) args.push('--customer-id', customerId);
  const { stdout } = await promisify(execFile)(BIN, args, { env: { ...process.env, TWOFOLD_JWT_SECRET: secret } });
  return stdout.trim();
}

export const REGISTER = `mutation($input: RegisterCustomerInput!) { registerCustomer(input: $input) { id token } }`;
export const ADD_PRODUCT = `mutation($input: AddProductInput!) { addProduct(input: $input) { id token } }`;
export const PLACE_ORDER = `mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { id token } }`;
export const ORDERS = `query($c: ID) { orders(first: 100, customerId: $c) { edges { node { id status } } } }`;

/** A customer and a product, visible. */
export async function seed(tf) {
  const tag = randomUUID().slice(0, 8);
  const customer = await tf.command(REGISTER, { input: { name: 'Ada', email: `ada-${tag}@example.com` } });
  const product = await tf.command(ADD_PRODUCT, { input: { sku: `TEA-${tag}`, title: 'Green tea', priceCents: 450 } });
  return { customerId: customer.data.registerCustomer.id, productId: product.data.addProduct.id };
}

export function orderInput({ customerId, productId }, quantity = 1) {
  return { customerId, lines: [{ productId, quantity }] };
}

export function orderIds(data) {
  return data.orders.edges.map((e) => e.node.id);
}
