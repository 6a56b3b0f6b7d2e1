#!/usr/bin/env bash
# Browser tests of GraphiQL (/) and the order board (/board) in headless
# Chromium, against a real twofold server on a free port with a fresh SQLite
# database (and, for test_identity.py, a second one that requires tokens, and
# for test_cors.py a third one with --cors-origin, started by the tests
# themselves). Builds nothing:
#
#   tests/browser/run.sh [path/to/twofold]     (default: target/debug/twofold)
#
# Installs Chromium from Debian (apt) when /usr/bin/chromium is missing and the
# pinned Playwright and pytest (requirements.txt) with pip. Exits non-zero on
# any failure. Leaves screenshots in target/screenshots/ (copies in docs/) and
# the click-to-visible figure in target/browser-bench.json.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if [[ $# -ge 1 ]]; then
    bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
else
    bin="$root/target/debug/twofold"
fi
[[ -x "$bin" ]] || { echo "run.sh: no twofold binary at $bin (build it first, or pass its path)" >&2; exit 2; }

if [[ ! -x /usr/bin/chromium ]]; then
    echo "run.sh: installing chromium (apt)"
    sudo_=""; [[ $(id -u) -eq 0 ]] || sudo_="sudo"
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq chromium >/dev/null
fi
python3 -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"

work=$(mktemp -d "${TMPDIR:-/tmp}/twofold-browser.XXXXXX")
export TWOFOLD_BIN="$bin"
export TWOFOLD_WORKDIR="$work"
export TWOFOLD_DATABASE_URL="sqlite://$work/twofold.db?mode=rwc"
TWOFOLD_PORT=$(python3 "$here/twofold_server.py" free-port)
export TWOFOLD_PORT
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1

status=1
finish() {
    python3 "$here/twofold_server.py" stop || true
    python3 "$here/twofold_server.py" stop keyed || true  # the keyed_server fixture's, if pytest died
    python3 "$here/twofold_server.py" stop cors || true   # test_cors.py's, likewise
    if [[ $status -ne 0 && -f "$work/server.log" ]]; then
        for log in "$work/server.log" "$work/keyed.log" "$work/cors.log"; do
            [[ -f "$log" ]] || continue
            echo "---- last lines of the server log ($log) ----" >&2
            tail -n 40 "$log" >&2
        done
    else
        rm -rf "$work"
    fi
}
trap finish EXIT

echo "run.sh: $bin on 127.0.0.1:$TWOFOLD_PORT, database $work/twofold.db"
python3 "$here/twofold_server.py" start >/dev/null
python3 "$here/seed.py"

set +e
(cd "$here" && python3 -m pytest -p no:cacheprovider -v -s --rootdir "$here" \
    test_guard.py test_graphiql.py test_board.py test_search.py test_identity.py test_readme_snippet.py test_cors.py test_restart.py test_bench.py)
status=$?
set -e
exit $status
