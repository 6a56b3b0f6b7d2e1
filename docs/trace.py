#!/usr/bin/env python3
"""Draws one trace as a waterfall (docs/trace.svg) from the spans the
tracing test received:

    TWOFOLD_TRACE_DUMP=/tmp/trace.jsonl cargo test --test it -- \
        traces::one_trace_from_the_request_to_its_visibility_on_postgres
    python3 docs/trace.py /tmp/trace.jsonl docs/trace.svg

Rows are spans in start order, indented under their parent; spans of
other traces that link to this one (the projector's batches, the push)
and their own children are drawn hatched; those holding the link are
marked "linked". No dependency beyond Python.
"""
import json
import sys
from html import escape


def main(src, dst):
    spans = [json.loads(line) for line in open(src) if line.strip()]
    if not spans:
        sys.exit("no spans in " + src)
    by_id = {s["span"]: s for s in spans}
    roots = [s for s in spans if s["name"].startswith("POST ")]
    main_trace = roots[0]["trace"] if roots else spans[0]["trace"]

    def depth(s):
        d, seen = 0, set()
        while s["parent"] in by_id and s["span"] not in seen:
            seen.add(s["span"])
            s = by_id[s["parent"]]
            d += 1
        return d

    t0 = min(s["start_ns"] for s in spans)
    t1 = max(s["end_ns"] for s in spans)
    total_ms = max((t1 - t0) / 1e6, 0.001)
    spans.sort(key=lambda s: (s["start_ns"], -s["end_ns"]))
    label_w, bar_w, row_h, top = 330, 560, 24, 40
    width, height = label_w + bar_w + 90, top + row_h * len(spans) + 30
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        '<defs><pattern id="h" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="3" height="6" fill="#7aa6d8"/></pattern></defs>',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="20" font-weight="bold">One placeOrder, from the HTTP request to '
        f'writeVisible ({total_ms:.1f} ms)</text>',
    ]
    for i, s in enumerate(spans):
        y = top + i * row_h
        x = label_w + (s["start_ns"] - t0) / 1e6 / total_ms * bar_w
        w = max((s["end_ns"] - s["start_ns"]) / 1e6 / total_ms * bar_w, 1.5)
        ms = (s["end_ns"] - s["start_ns"]) / 1e6
        name = ("  " * depth(s)) + s["name"]
        fill = "#2f6db5" if s["trace"] == main_trace else 'url(#h)'
        out.append(f'<text x="10" y="{y + 16}" xml:space="preserve">{escape(name)}</text>')
        out.append(f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" fill="{fill}"/>')
        note = f"{ms:.2f} ms" + ("  linked" if s["linked"] else "")
        out.append(f'<text x="{x + w + 4:.1f}" y="{y + 16}" fill="#444">{note}</text>')
    out.append("</svg>")
    with open(dst, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
