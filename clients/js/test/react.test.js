// The React hooks, rendered with react-test-renderer against the real server.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import React from 'react';
import TestRenderer, { act } from 'react-test-renderer';
import { app, seed, orderInput, PLACE_ORDER } from './helpers.js';
import { TwofoldProvider, useCommand, useWriteVisible } from '../dist/react.js';
import { TwofoldError } from '../dist/index.js';

globalThis.IS_REACT_ACT_ENVIRONMENT = true;

/** Renders `hook` inside a provider; returns every state it rendered with and a way to wait for one. */
async function renderHook(tf, hook) {
  const renders = [];
  let waiters = [];
  function Probe() {
    const value = hook();
    renders.push(value);
    for (const w of waiters) w();
    return null;
  }
  let renderer;
  await act(async () => {
    renderer = TestRenderer.create(React.createElement(TwofoldProvider, { value: tf }, React.createElement(Probe)));
  });
  const until = (predicate) =>
    new Promise((ok) => {
      const check = () => {
        const found = renders.find(predicate);
        if (found) ok(found);
      };
      waiters.push(check);
      check();
    });
  return { renders, until, unmount: () => act(async () => renderer.unmount()) };
}

describe('React hooks (sqlite)', () => {
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

  it('useCommand: pending, then visible with the data; an error lands in state and rejects', async () => {
    const probe = await renderHook(tf, () => useCommand(PLACE_ORDER));
    const [run, initial] = probe.renders.at(-1);
    assert.deepEqual(initial, { pending: false, visible: false, error: null });
    let placed;
    await act(async () => {
      placed = await run({ input: orderInput(ids) });
    });
    const states = probe.renders.map(([, s]) => s);
    assert.ok(states.some((s) => s.pending && !s.visible), 'pending while it waits');
    const last = states.at(-1);
    assert.equal(last.visible, true);
    assert.equal(last.pending, false);
    assert.equal(last.data.placeOrder.id, placed.data.placeOrder.id);
    assert.equal(last.token, placed.token);

    await act(async () => {
      await assert.rejects(probe.renders.at(-1)[0]({ input: orderInput(ids, 0) }), (e) => e.code === 'VALIDATION');
    });
    const failed = probe.renders.at(-1)[1];
    assert.equal(failed.error.code, 'VALIDATION');
    assert.equal(failed.visible, false);
    await probe.unmount();
  });

  it('useWriteVisible: null while waiting, then visible; a future token times out with its reason', async () => {
    const placed = await tf.command(PLACE_ORDER, { input: orderInput(ids) }, { until: 'accepted' });
    const seen = await renderHook(tf, () => useWriteVisible(placed.token));
    assert.equal(seen.renders[0].visible, null);
    await act(async () => {
      await seen.until((s) => s.visible !== null);
    });
    assert.equal(seen.renders.at(-1).visible, true);
    await seen.unmount();

    const never = await renderHook(tf, () => useWriteVisible('900000000000.1', { timeoutMs: 200 }));
    await act(async () => {
      await never.until((s) => s.visible !== null);
    });
    const { error, ...rest } = never.renders.at(-1);
    assert.deepEqual(rest, { visible: false, reason: 'TIMED_OUT' });
    assert.ok(error instanceof TwofoldError, 'the error command would reject with');
    assert.equal(error.code, 'NOT_VISIBLE_YET');
    assert.equal(error.token, '900000000000.1');
    await never.unmount();
  });

  it('useCommand and useWriteVisible show a stall while they wait through it', async () => {
    // The server's answers to the waits are scripted: stalled once, then visible.
    const scripted = server.client();
    const waitingOn = { kind: 'LOCK', detail: 'a lock', since: '2026-12-06T05:00:00Z', blockers: [] };
    let asks = 0;
    scripted.writeVisible = async () => (asks++ % 2 === 0 ? { visible: false, reason: 'STALLED', blockedBy: 'order_summary', waitingOn } : { visible: true });
    try {
      const probe = await renderHook(scripted, () => useCommand(PLACE_ORDER));
      let placed;
      await act(async () => {
        placed = await probe.renders.at(-1)[0]({ input: orderInput(ids) });
      });
      const states = probe.renders.map(([, s]) => s);
      const stalled = states.find((s) => s.stalled);
      assert.ok(stalled, 'a render showed the stall');
      assert.equal(stalled.pending, true);
      assert.deepEqual(stalled.stalled, { token: placed.token, view: 'order_summary', waitingOn });
      assert.deepEqual(states.at(-1), { pending: false, visible: true, error: null, data: placed.data, token: placed.token }, 'the stall is gone once visible');
      await probe.unmount();

      const seen = await renderHook(scripted, () => useWriteVisible(placed.token, { timeoutMs: 10_000 }));
      await act(async () => {
        await seen.until((s) => s.visible === true);
      });
      assert.ok(seen.renders.some((s) => s.visible === null && s.stalled?.view === 'order_summary'), 'stalled while waiting');
      await seen.unmount();
    } finally {
      scripted.dispose();
    }
  });
});
