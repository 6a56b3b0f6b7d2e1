// A write that is not visible, against the real server on SQLite and
// PostgreSQL: a stall that clears is waited through (issue 33), a stopped
// view is still an operator's matter.
//
// The stall is a real lock on a view, held from outside the server: on
// SQLite the write lock of a separate read database file (`sqlite3` in
// `BEGIN IMMEDIATE`), on PostgreSQL a session in `LOCK TABLE order_summary
// IN ACCESS EXCLUSIVE MODE`. It is held past the server's 10 s cap on one
// `writeVisible` wait, so a command that waits on must ask again, more
// than once, through the stall; the lock goes once `onStalled` has been
// told of the stall that long, and the command then resolves.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { BACKENDS, database, startServer, seed, orderInput, PLACE_ORDER } from './helpers.js';
import { createClient, TwofoldError } from '../dist/index.js';
import WebSocket from 'ws';

/** The server's cap on one writeVisible wait (`--consistency-max-wait-ms`, default 10 s). */
const SERVER_CAP_MS = 10_000;
/** The stall bound the servers here run with (`--stall-after-ms`), shorter than the 2 s default. */
const STALL_AFTER_MS = 1_000;

const HAS_SQLITE3 = spawnSync('sqlite3', ['-version']).status === 0;

/** The path of a `sqlite://PATH?…` URL. */
function sqlitePath(url) {
  return url.replace(/^sqlite:\/\//, '').replace(/\?.*$/, '');
}

/**
 * Runs the `sqlite3` shell on `file`, feeding it `script`; resolves with
 * its output once it prints `marker` (so whatever came before has run),
 * and gives `end(more)` to feed the rest and wait for it to exit.
 */
async function sqliteShell(file, script, marker) {
  if (!HAS_SQLITE3) throw new Error('these tests need the sqlite3 shell on PATH (apt-get install sqlite3)');
  const child = spawn('sqlite3', ['-bail', file], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const exited = new Promise((ok) => child.once('exit', (code) => ok(code)));
  const seen = new Promise((ok, fail) => {
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes(marker)) ok(out);
    });
    child.stderr.on('data', (d) => (err += d));
    exited.then((code) => fail(new Error(`sqlite3 ${file} exited (${code}) before ${marker}: ${err}${out}`)));
  });
  child.stdin.write(`.timeout 20000\n${script}\nSELECT '${marker}';\n`);
  await seen;
  return {
    async end(more = '') {
      child.stdin.end(`${more}\n.quit\n`);
      const code = await exited;
      if (code !== 0) throw new Error(`sqlite3 ${file} exited ${code}: ${err}`);
    },
  };
}

/**
 * A server whose views can be locked from outside: on SQLite its read
 * views live in their own file (`--read-database-url`), whose write lock
 * another connection can take without touching the event log.
 */
async function lockableApp(backend) {
  const db = await database(backend);
  const args = ['--stall-after-ms', String(STALL_AFTER_MS)];
  let readFile = null;
  if (backend === 'sqlite') {
    readFile = join(dirname(sqlitePath(db.url)), 'read.db');
    args.push('--read-database-url', `sqlite://${readFile}?mode=rwc`);
  }
  const server = await startServer(db, { args });
  return {
    ...server,
    db,
    readFile,
    client: (extra = {}) => createClient({ url: server.graphql, webSocketImpl: WebSocket, ...extra }),
    async stop() {
      await server.stop();
      await db.drop();
    },
  };
}

/**
 * Takes a lock that stalls the order views and keeps it until `release()`
 * (which may be called more than once). Resolves once the lock is held.
 */
async function holdLock(app, backend) {
  let released = null;
  if (backend === 'sqlite') {
    const shell = await sqliteShell(app.readFile, 'BEGIN IMMEDIATE;', 'locked');
    return { pid: null, release: () => (released ??= shell.end('ROLLBACK;')) };
  }
  const holder = new pg.Client({ connectionString: app.db.url, application_name: 'twofold-js-lock-holder' });
  await holder.connect();
  const { rows } = await holder.query('SELECT pg_backend_pid() AS pid');
  await holder.query('BEGIN');
  await holder.query('LOCK TABLE order_summary IN ACCESS EXCLUSIVE MODE');
  return {
    pid: rows[0].pid,
    release: () => (released ??= holder.query('ROLLBACK').finally(() => holder.end())),
  };
}

/** What the server names as the blocker: the SQLite write lock, or the PostgreSQL session's lock. */
function assertNamesTheLock(waitingOn, backend, lock) {
  if (backend === 'sqlite') {
    assert.equal(waitingOn.kind, 'SQLITE_WRITE_LOCK', JSON.stringify(waitingOn));
    return;
  }
  assert.equal(waitingOn.kind, 'LOCK', JSON.stringify(waitingOn));
  const holder = waitingOn.blockers.find((b) => b.pid === lock.pid);
  assert.ok(holder, `the lock holder is named: ${JSON.stringify(waitingOn)}`);
  assert.equal(holder.applicationName, 'twofold-js-lock-holder');
  assert.match(holder.lock, /AccessExclusiveLock on order_summary/);
}

/** A shipment for an order the log never placed: order_summary cannot apply it and stops there. */
async function appendPoisonEvent(app, backend, customerId) {
  const ghost = randomUUID();
  const payload = JSON.stringify({ orderId: ghost, customerId, carrier: 'DHL', trackingNumber: 'X' });
  if (backend === 'postgres') {
    const db = new pg.Client({ connectionString: app.db.url });
    await db.connect();
    try {
      await db.query(
        `INSERT INTO event (stream_type, stream_id, stream_version, event_type, event_version, payload, metadata, recorded_at)
         VALUES ('order', $1, 2, 'OrderShipped', 1, $2, '{}', now())`,
        [ghost, payload],
      );
    } finally {
      await db.end();
    }
    return;
  }
  // SQLite keeps stream ids as 16-byte blobs; recorded_at is written as the server writes it (copied from the last event).
  const quoted = payload.replace(/'/g, "''");
  const shell = await sqliteShell(
    sqlitePath(app.db.url),
    `INSERT INTO event (stream_type, stream_id, stream_version, event_type, event_version, payload, metadata, recorded_at)
     SELECT 'order', X'${ghost.replace(/-/g, '')}', 2, 'OrderShipped', 1, '${quoted}', '{}', recorded_at FROM event ORDER BY position DESC LIMIT 1;`,
    'inserted',
  );
  await shell.end();
}

for (const backend of BACKENDS) {
  describe(`a stall that clears (${backend})`, () => {
    let app;
    let tf;
    let ids;
    before(async () => {
      app = await lockableApp(backend);
      tf = app.client();
      ids = await seed(tf);
    });
    after(async () => {
      tf?.dispose();
      await app?.stop();
    });

    it("command waits through it past the server's 10 s cap, telling onStalled; a shorter timeout rejects TIMED_OUT with the stall", async () => {
      const lock = await holdLock(app, backend);
      try {
        const placedAt = Date.now();
        const stalls = [];
        const long = tf.command(PLACE_ORDER, { input: orderInput(ids) }, {
          timeoutMs: 45_000,
          onStalled: (stall) => {
            stalls.push({ ...stall, at: Date.now() - placedAt });
            // Told of the stall for longer than one server wait can last: now it may clear.
            if (Date.now() - placedAt > SERVER_CAP_MS + 500) void lock.release();
          },
        });
        const short = tf.command(PLACE_ORDER, { input: orderInput(ids) }, { timeoutMs: 3_000 });

        await assert.rejects(short, (e) => {
          assert.ok(e instanceof TwofoldError, String(e));
          assert.equal(e.code, 'NOT_VISIBLE_YET', e.message);
          assert.equal(e.reason, 'TIMED_OUT');
          assert.ok(e.waitingOn, `the last stall's waitingOn: ${e.message}`);
          assertNamesTheLock(e.waitingOn, backend, lock);
          assert.equal(typeof e.blockedBy, 'string');
          if (backend === 'postgres') assert.equal(e.blockedBy, 'order_summary');
          assert.match(e.message, /is stalled, waiting on/);
          assert.match(e.token, /^\d+\.\d+$/, 'what committed');
          return true;
        });
        const shortTook = Date.now() - placedAt;
        assert.ok(shortTook >= 3_000 && shortTook < 3_000 + 4_000, `the short command took ${shortTook} ms`);

        const placed = await long;
        const took = Date.now() - placedAt;
        assert.equal(placed.visible, true);
        assert.ok(took > SERVER_CAP_MS + 500, `resolved after ${took} ms, past one server wait`);
        assert.ok(stalls.length >= 2, `told more than once: ${stalls.map((s) => s.at).join(', ')} ms`);
        for (const stall of stalls) {
          assert.equal(stall.token, placed.token);
          assert.equal(typeof stall.view, 'string');
          assertNamesTheLock(stall.waitingOn, backend, lock);
        }
        // The lock went on the first stall told after the cap; the wait then saw the write.
        assert.ok(stalls.at(-1).at > SERVER_CAP_MS + 500);
        const { data } = await tf.query('query($id: ID!) { order(id: $id) { id status } }', { id: placed.data.placeOrder.id }, { consistentWith: null });
        assert.equal(data.order.status, 'PLACED', 'visible, as command said');
      } finally {
        await lock.release();
      }
    });
  });

  describe(`a stopped view (${backend})`, () => {
    let app;
    let tf;
    before(async () => {
      app = await lockableApp(backend);
      tf = app.client();
    });
    after(async () => {
      tf?.dispose();
      await app?.stop();
    });

    it('a command whose write a stopped view will never show rejects NOT_PROJECTED at once, with the reason and the view', async () => {
      const ids = await seed(tf);
      await appendPoisonEvent(app, backend, ids.customerId);
      const stalls = [];
      const started = Date.now();
      await assert.rejects(tf.command(PLACE_ORDER, { input: orderInput(ids) }, { timeoutMs: 20_000, onStalled: (s) => stalls.push(s) }), (e) => {
        assert.ok(e instanceof TwofoldError, String(e));
        assert.equal(e.code, 'NOT_PROJECTED', e.message);
        assert.equal(e.reason, 'PROJECTION_STOPPED');
        assert.equal(e.blockedBy, 'order_summary');
        assert.match(e.message, /an operator must act/);
        assert.match(e.token, /^\d+\.\d+$/, 'what committed');
        return true;
      });
      // The view stops within the poll interval: well before the 20 s the command would wait for a write that may still come.
      assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
      assert.deepEqual(stalls, [], 'a stopped view is no stall');
    });
  });
}
