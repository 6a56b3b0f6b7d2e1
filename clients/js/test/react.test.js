// The React hooks, rendered with react-test-renderer against the real server.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import React from 'react';
import TestRenderer, { act } from 'react-test-renderer';
import { app, seed, orderInput, PLACE_ORDER } from './helpers.js';
import { TwofoldProvider, useCommand, useWriteVisible } from '../dist/react.js';

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
    assert.deepEqual(never.renders.at(-1), { visible: false, reason: 'TIMED_OUT', error: null });
    await never.unmount();
  });
});
