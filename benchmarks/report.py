"""The benchmark's JSON as tables: markdown for the terminal, reStructuredText for the docs.

``render_rst(json_path)`` returns the tables and the targets list, for the Sphinx page to
include at build time; ``python benchmarks/report.py bench.json`` prints the same.
"""

from __future__ import annotations

import json
import sys
from typing import Any

SERVER_BASELINE = {"idle": "plain", "deferred": "own"}  # the same response without deferware


def tables(data: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of each table, in the order they are printed."""
    rows, d = data["inprocess"]["rows"], data["inprocess"]["differences_ns"]
    core = [[name, f"{r['min_ns']:.0f}", f"{r['median_ns']:.0f}", f"{d[name + ' - bare']:.0f}", r["what"]]
            for name, r in rows.items() if "what" in r]  # fmt: skip
    title = "Core: one request as a server drives it, ns"
    out = [(title, ["row", "min", "median", "over bare", "what"], core)]
    table = []
    for fw in data["meta"]["frameworks"]:
        us = [f"{rows[f'{fw}/{way}']['median_ns'] / 1e3:.1f}" for way in ("plain", "own", "idle", "deferred")]
        p = f"{fw}/"
        idle, own, ours = d[f"{p}idle - {p}plain"], d[f"{p}own - {p}plain"], d[f"{p}deferred - {p}idle"]
        adds = f"{idle / 1e3:.2f} ({idle / rows[f'{fw}/plain']['median_ns']:.1%})"
        table.append([fw, *us, adds, f"{own / 1e3:.2f}", f"{ours / 1e3:.2f}", f"{ours / own:.2f}"])
    header = ["framework", "plain", "own", "idle", "deferred", "idle adds", "own cookie", "deferware cookie"]
    out.append(("Frameworks: a hello in process, µs", [*header, "ratio"], table))
    s, table = data["streaming"], []
    for name, ns in s["ns_per_chunk"].items():
        ttfb, kib = s["ttfb_ns"][name] / 1e3, s["peak_memory_growth_bytes"][name] / 1024
        table.append([name, f"{ttfb:.1f}", f"{s['gib_per_s'][name]:.2f}", f"{ns:.0f}", f"{kib:.0f}"])
    header = ["variant", "TTFB µs", "GiB/s, copied", "ns/chunk, not copied", "peak growth KiB"]
    out.append((f"Streaming {s['bytes'] / 2**20:.0f} MiB in 64 KiB chunks, in process", header, table))
    routes, table = data["servers"]["routes"], []
    for route, cells in routes.items():
        prefix, way = route.rsplit("/", 1)
        base, row = routes[f"{prefix}/{SERVER_BASELINE.get(way, way)}"], [route]
        for kind in ("waitress", "gunicorn"):
            cpu = cells[kind]["cpu_us"]
            row += [f"{cells[kind]['rps']:.0f}", f"{cpu:.0f}", f"{cpu / base[kind]['cpu_us']:.3f}"]
        if "instructions" in cells:
            count = cells["instructions"]
            row += [f"{count / 1e3:.0f}", f"{count / base['instructions']:.3f}"]
        table.append(row)
    header = ["route", "waitress req/s", "CPU µs/req", "ratio", "gunicorn req/s", "CPU µs/req", "ratio"]
    header += ["k instructions/req", "ratio"] if "instructions" in cells else []
    out.append(("Real servers; ratio: idle over plain, deferred over own", header, table))
    table = [[t["name"], f"{t['value']:.3g}", f"{t['op']} {t['limit']:g}", verdict(t), t["how"]]
             for t in data["targets"]]  # fmt: skip
    return [*out, ("Targets", ["target", "value", "limit", "verdict", "numbers"], table)]


def verdict(target: dict[str, Any]) -> str:
    return "met" if target["met"] else "MISSED"


def render_markdown(data: dict[str, Any]) -> str:
    out = []
    for title, header, rows in tables(data):
        out += [f"\n**{title}**\n", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def rst_table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(map(len, column)) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in [header, *rows]]
    rule = "  ".join("=" * width for width in widths)
    return [rule, lines[0], rule, *lines[1:], rule]


def render_rst(json_path: str) -> str:
    """The benchmark's JSON at *json_path* as reStructuredText: the tables, then the targets list."""
    with open(json_path) as file:
        data = json.load(file)
    meta = data["meta"]
    versions = ", ".join(f"{name} {version}" for name, version in meta["versions"].items())
    out = [f"Measured on {meta['date']}: Python {meta['python']}, {meta['cpus']} CPUs, {versions}.", ""]
    for title, header, rows in tables(data)[:-1]:
        out += [f".. rubric:: {title}", "", *rst_table(header, rows), ""]
    out += [".. rubric:: Targets", ""]
    for t in data["targets"]:
        out.append(f"- **{verdict(t)}**: {t['name']}: {t['value']:.3g} {t['op']} {t['limit']:g} ({t['how']})")
    if "skipped" in data["servers"]:
        out += ["", f"Instructions were not counted: {data['servers']['skipped']}."]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/report.py BENCH_JSON  (prints reStructuredText)")
    sys.stdout.write(render_rst(sys.argv[1]))
