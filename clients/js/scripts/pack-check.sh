#!/usr/bin/env bash
# The package as a user gets it, from a clean checkout (issue 33):
#
#   clients/js/scripts/pack-check.sh [path/to/twofold]   (default: target/debug/twofold)
#
# 1. A clean checkout: the repository's files as git sees them (tracked and
#    not ignored, as they are in the working tree; no dist/, no
#    node_modules/, no src/generated/) copied to a temp dir and committed
#    there.
# 2. `npm pack` in it (its devDependencies installed with --ignore-scripts,
#    so nothing is built before the pack): `prepare` builds dist/; the
#    tarball must hold every entry point's JavaScript and declarations.
# 3. The tarball installed into an empty project with the peers: each entry
#    point (`.`, `/urql`, `/apollo`, `/react`) imported from Node, the
#    declarations type-checked by a consumer (against Apollo Client 4; the
#    package's own type-check uses 3), and the README's client-library
#    snippet run against a real server (its URL made absolute, as its
#    comment says to outside a page, and a WebSocket given for Node 20).
# 4. The other two ways docs/frontend.md gives: a git URL naming a commit and
#    the subdirectory (`git+file://…#<sha>::path:clients/js`), and a path
#    to the package's folder; each must import.
#
# Needs npm (with the registry reachable, or its cache warm) and git.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
if [[ $# -ge 1 ]]; then
  bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
else
  bin="${TWOFOLD_BIN:-$root/target/debug/twofold}"
fi
[[ -x "$bin" ]] || { echo "pack-check: no twofold binary at $bin (build it first, or pass its path)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/twofold-pack-check.XXXXXX")
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n-- pack-check: %s\n' "$*"; }
fail() { echo "pack-check: $*" >&2; exit 1; }
npm_quiet=(--no-audit --no-fund --loglevel=error)

step "a clean checkout in $work/repo"
mkdir -p "$work/repo"
(cd "$root" && git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do [[ -e "$f" ]] && printf '%s\0' "$f"; done |
  tar --null -T - -cf -) | tar -xf - -C "$work/repo"
for built in clients/js/dist clients/js/node_modules clients/js/src/generated; do
  [[ ! -e "$work/repo/$built" ]] || fail "$built is in the clean checkout: is it ignored by git?"
done
git -C "$work/repo" init -q
git -C "$work/repo" add -A
git -C "$work/repo" -c user.name=pack-check -c user.email=pack-check@localhost commit -qm 'pack-check snapshot'
sha=$(git -C "$work/repo" rev-parse HEAD)
pkg="$work/repo/clients/js"

step "npm pack (prepare builds dist/ from the checkout's schema.graphql)"
(cd "$pkg" && npm ci --ignore-scripts "${npm_quiet[@]}")
[[ ! -e "$pkg/dist" ]] || fail "dist/ exists before npm pack"
tarball=$(cd "$pkg" && npm pack --pack-destination "$work" --loglevel=error | tail -n1)
tarball="$work/$tarball"
[[ -s "$tarball" ]] || fail "npm pack made no tarball"
listing=$(tar -tzf "$tarball")
for entry in index urql apollo react generated/schema; do
  for ext in js d.ts; do
    grep -qx "package/dist/$entry.$ext" <<<"$listing" || fail "the tarball has no dist/$entry.$ext:\n$listing"
  done
done
echo "$(basename "$tarball"): $(wc -l <<<"$listing") files, dist/ complete"

# The peers the entry points need, at the ranges the package's tests use.
peers=(graphql@^16 ws@^8 "@urql/core@^6" "wonka@^6" "@apollo/client@^4" "rxjs@^7" "react@^18")

# Imports each entry point and checks what it exports.
cat >"$work/imports.mjs" <<'EOF'
import assert from 'node:assert/strict';
const core = await import('@twofold/client');
for (const name of ['createClient', 'TwofoldClient', 'TwofoldError', 'notVisibleError', 'reasonMeaning', 'retryableRequest', 'prepareCommand']) {
  assert.ok(core[name], `@twofold/client exports ${name}`);
}
assert.equal(typeof (await import('@twofold/client/urql')).twofoldExchange, 'function');
assert.equal(typeof (await import('@twofold/client/apollo')).TwofoldLink, 'function');
const react = await import('@twofold/client/react');
for (const name of ['useCommand', 'useWriteVisible', 'TwofoldProvider']) assert.ok(react[name], `@twofold/client/react exports ${name}`);
console.log('every entry point imports:', import.meta.resolve('@twofold/client'));
EOF

new_project() {
  mkdir -p "$1"
  printf '{ "name": "consumer", "version": "1.0.0", "private": true, "type": "module" }\n' >"$1/package.json"
  cp "$work/imports.mjs" "$1/"
}

step "the tarball in an empty project: imports, declarations"
new_project "$work/app"
(cd "$work/app" && npm install "${npm_quiet[@]}" "$tarball" "${peers[@]}" typescript@^5 @types/react@^18 >/dev/null)
(cd "$work/app" && node imports.mjs)
# skipLibCheck (Apollo 4's own dependencies do not check under NodeNext), so
# every import is held to a type that is not `any`, and a misuse must fail:
# a declaration that went missing would otherwise pass as `any`.
cat >"$work/app/consumer.ts" <<'EOF'
// Compiles only if the declarations are shipped, resolve, and fit Apollo Client 4 and urql.
import { createClient, notVisibleError, TwofoldClient, TwofoldError, type NotVisibleReason, type ProjectionWaitKind, type Stall, type Visibility } from '@twofold/client';
import { twofoldExchange } from '@twofold/client/urql';
import { TwofoldLink } from '@twofold/client/apollo';
import { useCommand, useWriteVisible, type CommandState } from '@twofold/client/react';
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from '@apollo/client';
import { Client, cacheExchange, fetchExchange, type Exchange } from '@urql/core';

/** `never` when T is `any`: what a lost declaration would turn a type into. */
type Known<T> = 0 extends 1 & T ? never : T;

const tf: Known<TwofoldClient> = createClient({ url: 'http://127.0.0.1:8000/graphql', onStalled: (s: Known<Stall>) => console.log(s.view, s.waitingOn.kind) });
const reasons: Known<NotVisibleReason>[] = ['TIMED_OUT', 'PROJECTION_STOPPED', 'DEAD_LETTERED', 'STALLED'];
// @ts-expect-error: not a reason the schema has
const bogus: NotVisibleReason = 'BOGUS';
const kind: Known<ProjectionWaitKind> = 'SQLITE_WRITE_LOCK';
const seen: Known<Visibility> = { visible: false, reason: reasons[0] };
const error: Known<TwofoldError> = notVisibleError('1.1', seen);
const link: Known<TwofoldLink> = new TwofoldLink(tf);
const asApollo: ApolloLink = link;
// @ts-expect-error: the link needs the client
new TwofoldLink();
new ApolloClient({ cache: new InMemoryCache(), link: ApolloLink.from([asApollo, new HttpLink({ uri: tf.url, fetch: tf.fetch })]) });
const exchange: Known<Exchange> = twofoldExchange(tf);
new Client({ url: tf.url, fetch: tf.fetch, exchanges: [exchange, cacheExchange, fetchExchange] });
export const hooks: [Known<typeof useCommand>, Known<typeof useWriteVisible>, CommandState<unknown> | null, string, string, string] = [useCommand, useWriteVisible, null, kind, error.code, bogus];
EOF
cat >"$work/app/tsconfig.json" <<'EOF'
{ "compilerOptions": { "target": "ES2022", "module": "NodeNext", "moduleResolution": "NodeNext", "lib": ["ES2022", "DOM"], "strict": true, "noEmit": true, "skipLibCheck": true, "types": [] }, "files": ["consumer.ts"] }
EOF
(cd "$work/app" && npx tsc -p tsconfig.json) || fail "the consumer does not type-check against the installed declarations"
echo "the declarations type-check (Apollo Client $(cd "$work/app" && node -p "require('@apollo/client/package.json').version"))"

step "the README's client-library snippet, against a server"
port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
base="http://127.0.0.1:$port"
"$bin" serve --bind "127.0.0.1:$port" --database-url "sqlite://$work/twofold.db?mode=rwc" >"$work/server.log" 2>&1 &
server_pid=$!
# /healthz answers while the server still starts ("starting": true): wait for the service.
started() { local body; body=$(curl -fs "$base/healthz" 2>/dev/null) && ! grep -q '"starting":true' <<<"$body"; }
for _ in $(seq 1 300); do
  started && break
  kill -0 "$server_pid" 2>/dev/null || fail "twofold serve exited: $(cat "$work/server.log")"
  sleep 0.1
done
started || fail "twofold serve did not start in 30 s: $(cat "$work/server.log")"
cat >"$work/app/seed.mjs" <<EOF
import WebSocket from 'ws';
import { createClient } from '@twofold/client';
const tf = createClient({ url: '$base/graphql', webSocketImpl: WebSocket });
const customer = await tf.command('mutation(\$input: RegisterCustomerInput!) { registerCustomer(input: \$input) { id token } }', { input: { name: 'Ada', email: 'ada@example.com' } });
const product = await tf.command('mutation(\$input: AddProductInput!) { addProduct(input: \$input) { id token } }', { input: { sku: 'TEA-1', title: 'Green tea', priceCents: 450 } });
console.log(JSON.stringify({ customerId: customer.data.registerCustomer.id, productId: product.data.addProduct.id }));
tf.dispose();
EOF
ids=$(cd "$work/app" && timeout 60 node seed.mjs)
node - "$root/README.md" "$base" "$ids" >"$work/app/snippet.mjs" <<'EOF'
const [readme, base, ids] = process.argv.slice(2);
const text = require('node:fs').readFileSync(readme, 'utf8');
const block = text.split('<!-- snippet:client-library -->')[1]?.split('<!-- /snippet:client-library -->')[0];
if (!block) throw new Error('no client-library snippet in README.md');
const code = block.trim().replace(/^```js\n/, '').replace(/```$/, '');
const relative = "createClient({ url: '/graphql' })";
if (code.split(relative).length !== 2) throw new Error(`the snippet no longer says ${relative}: update pack-check.sh`);
const { customerId, productId } = JSON.parse(ids);
console.log("import WebSocket from 'ws';");
console.log(`const customerId = ${JSON.stringify(customerId)};`);
console.log(`const productId = ${JSON.stringify(productId)};`);
console.log(code.replace(relative, `createClient({ url: '${base}/graphql', webSocketImpl: WebSocket })`));
EOF
out=$(cd "$work/app" && timeout 60 node snippet.mjs) || fail "the README snippet failed: $out"
echo "$out"
grep -Eq '^order [0-9a-f-]{36}: visible, PLACED, 450 cents$' <<<"$out" || fail "the README snippet did not show the order"
kill "$server_pid" && wait "$server_pid" 2>/dev/null || true
server_pid=""

step "npm install from a git URL (a commit and the subdirectory)"
new_project "$work/from-git"
(cd "$work/from-git" && npm install "${npm_quiet[@]}" "git+file://$work/repo#$sha::path:clients/js" "${peers[@]}" >/dev/null)
[[ -f "$work/from-git/node_modules/@twofold/client/dist/index.d.ts" ]] || fail "the git install has no declarations"
(cd "$work/from-git" && node imports.mjs)

step "npm install from a path (the folder, linked; its prepare builds it in place)"
rm -rf "$pkg/dist" "$pkg/src/generated"
new_project "$work/from-path"
(cd "$work/from-path" && npm install "${npm_quiet[@]}" "$pkg" "${peers[@]}" >/dev/null)
[[ -f "$pkg/dist/index.d.ts" ]] || fail "the path install did not build dist/"
(cd "$work/from-path" && node imports.mjs)

step "ok"
