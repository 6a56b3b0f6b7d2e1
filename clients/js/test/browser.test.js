// In Chromium: a page of the server runs the README's client-library snippet
// as written, against a bundle of the built library (esbuild, made here),
// places an order, and shows it once visible.
//
// The page is the server's real /board (with its Content-Security-Policy):
// its module script is answered with the snippet, and the bundle is served
// beside it, so everything runs on the server's own origin.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';
import { ROOT, app, seed } from './helpers.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const available = existsSync(CHROMIUM);
if (!available && process.env.TWOFOLD_REQUIRE_BROWSER === '1') {
  throw new Error(`TWOFOLD_REQUIRE_BROWSER=1 but there is no Chromium at ${CHROMIUM} (set CHROMIUM)`);
}

const BEGIN = '<!-- snippet:client-library -->';
const END = '<!-- /snippet:client-library -->';
const IMPORT = "import { createClient } from '@twofold/client';";

function readmeSnippet() {
  const text = readFileSync(resolve(ROOT, 'README.md'), 'utf8');
  assert.equal(text.split(BEGIN).length, 2, 'the snippet markers appear once');
  const block = text.slice(text.indexOf(BEGIN) + BEGIN.length, text.indexOf(END)).trim();
  assert.ok(block.startsWith('```js\n') && block.endsWith('```'));
  const code = block.slice('```js\n'.length, -'```'.length);
  assert.equal(code.split(IMPORT).length, 2, 'it imports createClient once');
  assert.ok(code.split('\n').filter((l) => l.trim()).length <= 5, 'read-your-write in five lines');
  return code;
}

describe('the built library in Chromium', { skip: !available && `no Chromium at ${CHROMIUM}` }, () => {
  let server;
  let browser;
  let bundle;
  before(async () => {
    const built = await build({
      stdin: { contents: "export * from './dist/index.js';", resolveDir: resolve(ROOT, 'clients/js'), loader: 'js' },
      bundle: true,
      format: 'esm',
      platform: 'browser',
      write: false,
      logLevel: 'silent',
    });
    bundle = built.outputFiles[0].text;
    server = await app('sqlite');
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--headless', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it("runs the README's read-your-write snippet: the order shows once visible", async () => {
    const tf = server.client();
    const { customerId, productId } = await seed(tf);
    tf.dispose();
    const snippet = readmeSnippet();
    const module = [
      "import { createClient } from '/assets/twofold-client.js';",
      `const customerId = ${JSON.stringify(customerId)};`,
      `const productId = ${JSON.stringify(productId)};`,
      snippet.replace(IMPORT, ''),
      "const shown = document.createElement('p'); shown.id = 'placed';",
      'shown.textContent = `${placed.data.placeOrder.id} ${data.order.status}`;',
      'document.body.append(shown);',
    ].join('\n');
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const logged = [];
    page.on('console', (m) => logged.push(m.text()));
    const sockets = [];
    page.on('websocket', (ws) => sockets.push(ws.url()));
    await page.route(`${server.url}/assets/board.js`, (route) => route.fulfill({ status: 200, contentType: 'text/javascript', body: module }));
    await page.route(`${server.url}/assets/twofold-client.js`, (route) => route.fulfill({ status: 200, contentType: 'text/javascript', body: bundle }));
    try {
      await page.goto(`${server.url}/board`);
      const placed = await page.waitForSelector('#placed', { timeout: 15_000 }).catch(() => {
        throw new Error(`the page never showed the order; console: ${logged.join(' | ')}; errors: ${errors.join(' | ')}`);
      });
      const [id, status] = (await placed.textContent()).split(' ');
      assert.equal(status, 'PLACED');
      assert.ok(logged.some((l) => new RegExp(`^order ${id}: visible, PLACED, 450 cents$`).test(l)), logged.join(' | '));
      assert.deepEqual(errors, []);
      assert.ok(sockets.some((u) => u.endsWith('/graphql/ws')), 'it waited on writeVisible over the WebSocket');
      // It really is on the server.
      const check = server.client();
      const { data } = await check.query('query($id: ID!) { order(id: $id) { id } }', { id });
      assert.equal(data.order.id, id);
      check.dispose();
    } finally {
      await context.close();
    }
  });
});
