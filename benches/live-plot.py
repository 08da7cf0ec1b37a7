#!/usr/bin/env python3
"""The report of benches/live-replay.sh, from the table of its runs (standard library only).

    live-plot.py RESULTS-DIR META

reads RESULTS-DIR/runs.tsv (one run a line, the FIELDS below, tab-separated, "null" where a
measure does not apply) and META (key=value lines: the run's setting), writes runs.json,
runs.csv and loss-cpu.svg into RESULTS-DIR, and prints the medians per tool and rate with
their spread and the headline: the highest rate with zero loss in every run.

The SVG is self-contained (no script, no external font or style). Every dot is one run's
measure, and carries it: class "point", data-tool, data-rate, data-run, data-metric
("loss_pct" or "cpu_s_per_mpkt"), data-x (the rate reached, pps) and data-y (the measure),
so the picture can be checked against runs.json.
"""

import csv
import json
import math
import statistics
import sys
from xml.sax.saxutils import quoteattr, escape

FIELDS = ["tool", "generator", "rate", "run", "achieved_pps", "sent", "received", "summary_read",
          "kernel_drops", "interface_drops", "shed", "lost", "loss_pct", "cpu_seconds",
          "cpu_s_per_mpkt", "peak_rss_kib"]
INTEGERS = {"run", "achieved_pps", "sent", "received", "summary_read", "kernel_drops",
            "interface_drops", "shed", "lost", "peak_rss_kib"}
FLOATS = {"loss_pct", "cpu_seconds", "cpu_s_per_mpkt"}
COLOURS = {"exwatch": "#1f6fb4", "baseline": "#7f7f7f", "suricata": "#d9541e"}


def value(name, text):
    if text in ("null", ""):
        return None
    if name in INTEGERS:
        return int(text)
    if name in FLOATS:
        return float(text)
    return text


def read_records(path):
    records = []
    for number, line in enumerate(open(path), 1):
        cells = line.rstrip("\n").split("\t")
        if len(cells) != len(FIELDS):
            sys.exit(f"live-plot: {path}:{number}: {len(cells)} fields, expected {len(FIELDS)}")
        try:
            record = {name: value(name, cell) for name, cell in zip(FIELDS, cells)}
        except ValueError as err:
            sys.exit(f"live-plot: {path}:{number}: {err}")
        rate = record["rate"]
        record["offered_pps"] = None if rate == "top" else int(rate)
        records.append(record)
    return records


def read_offline(path):
    """The offline analyses of the capture: run, CPU-seconds, CPU-s per Mpkt."""
    try:
        with open(path) as f:
            runs = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    except FileNotFoundError:
        return None
    if not runs:
        return None
    runs = [{"run": int(r[0]), "cpu_seconds": float(r[1]), "cpu_s_per_mpkt": float(r[2])} for r in runs]
    cpu = [r["cpu_s_per_mpkt"] for r in runs]
    return {"runs": runs, "median_cpu_s_per_mpkt": statistics.median(cpu),
            "min_cpu_s_per_mpkt": min(cpu), "max_cpu_s_per_mpkt": max(cpu)}


def summarise(records, rates, offline):
    summary = []
    for tool in sorted({r["tool"] for r in records}, key=lambda t: (t != "exwatch", t != "baseline", t)):
        for rate in rates:
            runs = [r for r in records if r["tool"] == tool and r["rate"] == rate]
            if not runs:
                continue
            loss = [r["loss_pct"] for r in runs]
            cpu = [r["cpu_s_per_mpkt"] for r in runs]
            summary.append({
                "tool": tool, "rate": rate, "runs": len(runs),
                "median_achieved_pps": statistics.median(r["achieved_pps"] for r in runs),
                "median_loss_pct": statistics.median(loss), "min_loss_pct": min(loss),
                "max_loss_pct": max(loss),
                "median_cpu_s_per_mpkt": statistics.median(cpu), "min_cpu_s_per_mpkt": min(cpu),
                "max_cpu_s_per_mpkt": max(cpu),
                "max_peak_rss_kib": max(r["peak_rss_kib"] for r in runs),
                "zero_loss_every_run": all(r["loss_pct"] == 0 and r["lost"] == 0 for r in runs),
            })
            if tool == "exwatch":
                base = offline["median_cpu_s_per_mpkt"] if offline else 0
                summary[-1]["live_to_offline"] = statistics.median(cpu) / base if base else None
    return summary


def headline(summary):
    best = {}
    for row in summary:
        best.setdefault(row["tool"], None)
        if not row["zero_loss_every_run"]:
            continue
        top = best[row["tool"]]
        if top is None or row["median_achieved_pps"] > top["median_achieved_pps"]:
            best[row["tool"]] = {"rate": row["rate"], "median_achieved_pps": row["median_achieved_pps"]}
    return best


def ticks(high):
    """Round steps (1, 2 or 5 times a power of ten) from 0 to at least `high`."""
    if high <= 0:
        return [0, 1]
    scale = 10 ** math.floor(math.log10(high / 5))
    step = next(s * scale for s in (1, 2, 5, 10) if s * scale * 5 >= high)
    count = math.ceil(high / step)
    return [round(i * step, 10) for i in range(count + 1)]


def label(v):
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def panel(records, summary, metric, title, left, top, width, height):
    xs = ticks(max((r["achieved_pps"] for r in records), default=1))
    ys = ticks(max((r[metric] for r in records), default=1))
    sx = lambda v: left + width * v / xs[-1]
    sy = lambda v: top + height - height * v / ys[-1]
    out = [f'<text x="{left + width / 2}" y="{top - 12}" text-anchor="middle" font-weight="bold">{escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" stroke="#444"/>']
    for t in xs:
        out.append(f'<line x1="{sx(t):.1f}" y1="{top + height}" x2="{sx(t):.1f}" y2="{top + height + 5}" stroke="#444"/>')
        out.append(f'<text x="{sx(t):.1f}" y="{top + height + 18}" text-anchor="middle">{label(t)}</text>')
    for t in ys:
        out.append(f'<line x1="{left - 5}" y1="{sy(t):.1f}" x2="{left + width}" y2="{sy(t):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 8}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    out.append(f'<text x="{left + width / 2}" y="{top + height + 38}" text-anchor="middle">'
               'offered rate, packets/s (as the generator reached it)</text>')
    for tool in dict.fromkeys(r["tool"] for r in records):
        colour = COLOURS.get(tool, "#333")
        medians = sorted((row["median_achieved_pps"], statistics.median(
            r[metric] for r in records if r["tool"] == tool and r["rate"] == row["rate"]))
            for row in summary if row["tool"] == tool)
        points = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in medians)
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        for r in records:
            if r["tool"] != tool:
                continue
            out.append(f'<circle class="point" data-tool={quoteattr(tool)} data-rate={quoteattr(r["rate"])} '
                       f'data-run="{r["run"]}" data-metric="{metric}" data-x="{r["achieved_pps"]}" '
                       f'data-y="{r[metric]}" cx="{sx(r["achieved_pps"]):.1f}" cy="{sy(r[metric]):.1f}" '
                       f'r="3.5" fill="{colour}" fill-opacity="0.7"/>')
    return out


def svg(records, summary, meta):
    width, height = 960, 440
    tools = list(dict.fromkeys(r["tool"] for r in records))
    title = (" and ".join(tools) + ": " + meta.get("capture", "") + ", " + meta.get("generator", "") + ", "
             + meta.get("runs", "") + " runs per rate")
    body = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
            f'<rect width="{width}" height="{height}" fill="white"/>',
            f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="13">'
            f'{escape(title)}</text>']
    body += panel(records, summary, "loss_pct", "loss, % of frames sent", 70, 60, 360, 300)
    body += panel(records, summary, "cpu_s_per_mpkt", "CPU-seconds per million packets", 560, 60, 360, 300)
    for i, tool in enumerate(tools):
        colour = COLOURS.get(tool, "#333")
        body.append(f'<circle cx="{80 + 120 * i}" cy="{height - 20}" r="4" fill="{colour}"/>')
        body.append(f'<text x="{90 + 120 * i}" y="{height - 16}">{escape(tool)}</text>')
    if "suricata" not in tools and meta.get("suricata"):
        body.append(f'<text x="{80 + 120 * len(tools)}" y="{height - 16}">'
                    f'{escape("suricata: " + meta["suricata"])}</text>')
    body.append("</svg>")
    return "\n".join(body) + "\n"


def main():
    results, meta_text = sys.argv[1], sys.argv[2]
    meta = dict(line.split("=", 1) for line in meta_text.splitlines() if "=" in line)
    records = read_records(f"{results}/runs.tsv")
    rates = meta.get("rates", "").split()
    offline = read_offline(f"{results}/offline.tsv")
    summary = summarise(records, rates, offline)
    best = headline(summary)
    doc = {"script": meta.get("script", "live-replay"), "capture": meta.get("capture"),
           "packets": int(meta["packets"]) if meta.get("packets", "").isdigit() else None,
           "generator": meta.get("generator"), "runs": int(meta.get("runs", "0")), "rates": rates,
           "cores": int(meta.get("cores", "0")), "cpu_model": meta.get("cpu_model"),
           "exwatch_args": meta.get("exwatch_args", ""), "suricata": meta.get("suricata"),
           "records": [{k: r[k] for k in FIELDS[:3] + ["offered_pps"] + FIELDS[3:]} for r in records],
           "summary": summary, "zero_loss": best, "offline": offline}
    with open(f"{results}/runs.json", "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    with open(f"{results}/runs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS[:3] + ["offered_pps"] + FIELDS[3:])
        writer.writeheader()
        for r in doc["records"]:
            writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    with open(f"{results}/loss-cpu.svg", "w") as f:
        f.write(svg(records, summary, meta))

    print(f"{'tool':<9} {'rate':>8} {'runs':>4} {'reached':>9} {'loss_% median (min-max)':>26} "
          f"{'cpu_s/Mpkt median (min-max)':>30} {'peak_RSS_MiB':>12}")
    for row in summary:
        print(f"{row['tool']:<9} {row['rate']:>8} {row['runs']:>4} {row['median_achieved_pps']:>9.0f} "
              f"{row['median_loss_pct']:>9.3f} ({row['min_loss_pct']:.3f}-{row['max_loss_pct']:.3f}) "
              f"{row['median_cpu_s_per_mpkt']:>12.3f} ({row['min_cpu_s_per_mpkt']:.3f}-"
              f"{row['max_cpu_s_per_mpkt']:.3f}) {row['max_peak_rss_kib'] / 1024:>12.1f}")
    if offline:
        print(f"exwatch analyze (offline), same capture: {offline['median_cpu_s_per_mpkt']:.3f} CPU-s/Mpkt "
              f"({offline['min_cpu_s_per_mpkt']:.3f}-{offline['max_cpu_s_per_mpkt']:.3f}); live over offline: "
              + ", ".join(f"{row['rate']} {row['live_to_offline']:.2f}x" for row in summary
                          if row.get("live_to_offline") is not None))
    for tool, top in best.items():
        said = "none" if top is None else f"{top['rate']} (reached {top['median_achieved_pps']:.0f} pps, median)"
        print(f"{tool}: highest rate with zero loss in every run (no drop, nothing shed, every frame "
              f"received): {said}")


main()
