#!/usr/bin/env bash
# Re-fetches the pinned browser bundles from the npm registry and copies the
# files the pages use into src/http/static/vendor/<package>@<version>/, with
# each package's licence. Run it from anywhere; it needs npm, node and tar.
#
#   src/http/static/update-vendor.sh
#
# To move to another version, change it here and run the script: it rewrites
# the versioned paths in the pages (graphiql.html, board.js) and the generated
# list of embedded files (vendor/assets.rs), then `cargo build` embeds them.
set -euo pipefail

GRAPHIQL_VERSION=3.9.0      # UMD bundle (React 18), graphql-ws client included
REACT_VERSION=18.3.1        # umd/react.production.min.js
REACT_DOM_VERSION=18.3.1    # umd/react-dom.production.min.js
GRAPHQL_WS_VERSION=6.4.2    # ES module client for the order board

here=$(cd "$(dirname "$0")" && pwd)
vendor="$here/vendor"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# fetch NAME VERSION: unpacks the registry tarball into $tmp/NAME and records
# its integrity in the manifest.
fetch() {
    local name=$1 version=$2 tarball
    tarball=$(cd "$tmp" && npm pack --silent "$name@$version" | tail -n 1)
    mkdir -p "$tmp/$name"
    tar -xzf "$tmp/$tarball" -C "$tmp/$name" --strip-components=1
    printf '%s@%s %s\n' "$name" "$version" \
        "$(cd "$tmp" && npm view "$name@$version" dist.integrity)" >> "$tmp/MANIFEST"
}

# put NAME VERSION FILE...: copies files (paths inside the package) flat into
# vendor/NAME@VERSION/.
put() {
    local name=$1 version=$2; shift 2
    local dir="$vendor/$name@$version"
    mkdir -p "$dir"
    for file in "$@"; do cp "$tmp/$name/$file" "$dir/"; done
}

: > "$tmp/MANIFEST"
fetch graphiql "$GRAPHIQL_VERSION"
fetch react "$REACT_VERSION"
fetch react-dom "$REACT_DOM_VERSION"
fetch graphql-ws "$GRAPHQL_WS_VERSION"

rm -rf "$vendor"
mkdir -p "$vendor"
put graphiql "$GRAPHIQL_VERSION" graphiql.min.js graphiql.min.css LICENSE
put react "$REACT_VERSION" umd/react.production.min.js LICENSE
put react-dom "$REACT_DOM_VERSION" umd/react-dom.production.min.js LICENSE
# The ES module client and the chunks it imports (hashed names).
chunks=$(grep -oE "from '\./[^']+'" "$tmp/graphql-ws/dist/client.js" | sed -E "s#from '\./([^']+)'#dist/\1#" | sort -u)
# shellcheck disable=SC2086
put graphql-ws "$GRAPHQL_WS_VERSION" dist/client.js $chunks LICENSE.md

# GraphiQL's stylesheet embeds its web fonts as data: URLs, which the pages'
# Content-Security-Policy (font-src falls back to 'self') refuses. Write each
# font to a file beside it and point the stylesheet at the files instead.
node - "$vendor/graphiql@$GRAPHIQL_VERSION" <<'JS'
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const dir = process.argv[2];
const cssPath = path.join(dir, 'graphiql.min.css');
const css = fs.readFileSync(cssPath, 'utf8');
fs.mkdirSync(path.join(dir, 'fonts'), { recursive: true });
let count = 0;
const out = css.replace(/url\(\s*(["']?)data:font\/(woff2?|ttf|otf);base64,([A-Za-z0-9+/=]+)\1\s*\)/g, (_, _q, kind, b64) => {
  const bytes = Buffer.from(b64, 'base64');
  const name = crypto.createHash('sha256').update(bytes).digest('hex').slice(0, 16) + '.' + kind;
  fs.writeFileSync(path.join(dir, 'fonts', name), bytes);
  count += 1;
  return `url(fonts/${name})`;
});
if (/url\(\s*["']?data:font/.test(out)) throw new Error('a data: font was left in graphiql.min.css');
fs.writeFileSync(path.join(dir, 'graphiql.fonts.css'), out);
console.error(`graphiql: ${count} fonts moved out of the stylesheet`);
JS

{
    echo "# Written by update-vendor.sh: the npm packages and their registry integrity."
    cat "$tmp/MANIFEST"
    echo "# graphiql.min.css is kept as published but not served: the pages load"
    echo "# graphiql.fonts.css, the same stylesheet with its data: fonts moved to fonts/."
} > "$vendor/MANIFEST.txt"

# The list of embedded vendor files (included by src/http/pages.rs): every
# vendored file but the original stylesheet.
{
    echo "// Written by update-vendor.sh; do not edit."
    echo "&["
    (cd "$here" && find vendor -type f ! -name assets.rs ! -name graphiql.min.css | LC_ALL=C sort | sed 's/.*/    asset!("&"),/')
    echo "]"
} > "$vendor/assets.rs"

# The versioned paths the pages load.
sed -i -E \
    -e "s#vendor/graphiql@[^/]+/#vendor/graphiql@$GRAPHIQL_VERSION/#g" \
    -e "s#vendor/react@[^/]+/#vendor/react@$REACT_VERSION/#g" \
    -e "s#vendor/react-dom@[^/]+/#vendor/react-dom@$REACT_DOM_VERSION/#g" \
    -e "s#vendor/graphql-ws@[^/]+/#vendor/graphql-ws@$GRAPHQL_WS_VERSION/#g" \
    "$here/graphiql.html" "$here/board.js"

echo "vendored into $vendor:"
(cd "$vendor" && find . -type f | LC_ALL=C sort | sed 's#^\./#  #')
