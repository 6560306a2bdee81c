"""Results of a benchmark run as JSON, a Markdown table and a PNG plot; shared by the CPU and GPU scripts.

A run is a list of rows, one per (suite, layer, dtype, pass, algorithm), each a flat dict:

    suite        'batch' / 'batch1' (GPU) or 'cpu'
    layer, network, title, shape, N, kind
    dtype, pass, algo                    pass: fprop / dgrad / wgrad (conv), fwd / bwd (pooling)
    gpuconv_ms, torch_ms                 median per call, milliseconds
    ratio                                torch_ms / gpuconv_ms: above 1 means gpuconv is faster
    gpuconv_min_ms, torch_min_ms, ratio_min   the same from the fastest call of each (robust to a shared,
                                         noisy machine: contention only ever adds time)
    unit, work                           'TFLOP/s' with work in FLOPs, or 'GB/s' with work in bytes
    gpuconv_rate, torch_rate             achieved TFLOP/s or GB/s
    gpuconv_pct_peak, torch_pct_peak     percent of the device's peak for that unit and dtype (GPU only)
    err_gpuconv, err_torch, ok           the check before timing (see checks.py)
    reps, sets, error                    repeats timed, input sets rotated, and any exception text

Geometric means of the ratio are taken per (suite, dtype, algo) over the rows that passed their check:
per pass, for the forward pass (fprop and pooling fwd) and for forward + full backward (per layer, the
summed time of all its passes).
"""

from __future__ import annotations

import textwrap

import json
import math
from collections import defaultdict

FORWARD = ("fprop", "fwd")
PASS_LABEL = {"fprop": "forward", "fwd": "forward", "dgrad": "input grad", "bwd": "input grad",
              "wgrad": "weight grad"}


def geomean(values):
    values = [v for v in values if v and v > 0 and math.isfinite(v)]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _good(row):
    return row.get("ok") and row.get("gpuconv_ms") and row.get("torch_ms")


def summarise(rows, key="ratio") -> list:
    """Geometric-mean ratios: a list of {suite, dtype, algo, group, n, geomean_ratio, failed}; key picks the
    ratio of medians ('ratio') or of fastest calls ('ratio_min')."""
    out = []
    keyed = defaultdict(list)
    for r in rows:
        keyed[(r["suite"], r["dtype"], r["algo"])].append(r)
    for (suite, dtype, algo), rs in sorted(keyed.items()):
        groups = {}
        for p in ("fprop", "dgrad", "wgrad", "fwd", "bwd"):
            groups[p] = [r[key] for r in rs if r["pass"] == p and _good(r)]
        groups["forward"] = [r[key] for r in rs if r["pass"] in FORWARD and _good(r)]
        groups["forward+backward"] = _whole_layer_ratios(rs, "_min_ms" if key == "ratio_min" else "_ms")
        failed = sum(1 for r in rs if not _good(r))
        for group, ratios in groups.items():
            if ratios:
                out.append({"suite": suite, "dtype": dtype, "algo": algo, "group": group, "n": len(ratios),
                            "geomean_ratio": geomean(ratios), "failed": failed})
    return out


def _whole_layer_ratios(rows, suffix):
    """Per layer with every pass timed and checked: sum of PyTorch's times over sum of gpuconv's."""
    by_layer = defaultdict(list)
    for r in rows:
        by_layer[r["layer"]].append(r)
    ratios = []
    for rs in by_layer.values():
        if all(_good(r) for r in rs) and {r["pass"] for r in rs} >= ({"fprop", "dgrad", "wgrad"}
                                                                    if rs[0]["kind"] in ("conv", "tconv")
                                                                    else {"fwd", "bwd"}):
            ratios.append(sum(r["torch" + suffix] for r in rs) / sum(r["gpuconv" + suffix] for r in rs))
    return ratios


# ------------------------------------------------------------------------------------------------ JSON


def write_json(path, meta: dict, rows: list, summary: list, extra: dict | None = None) -> None:
    doc = {"meta": meta, "summary": summary, "rows": rows}
    if extra:
        doc.update(extra)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, default=str)


# -------------------------------------------------------------------------------------------- Markdown


def _num(v, digits=3):
    if v is None:
        return "—"
    if isinstance(v, float) and not math.isfinite(v):
        return "inf"
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    return f"{v:.{max(0, digits - 1 - mag)}f}"


def _err(v):
    if v is None:
        return "—"
    return "inf" if not math.isfinite(v) else f"{v:.1e}"


def summary_markdown(summary: list, suites=None) -> str:
    """One table: a line per (suite, dtype, algo), a column per group."""
    cols = ["forward", "forward+backward", "fprop", "dgrad", "wgrad", "fwd", "bwd"]
    present = [c for c in cols if any(s["group"] == c for s in summary)]
    lines = ["| suite | dtype | algo | " + " | ".join(present) + " | failed |",
             "|---|---|---|" + "---:|" * len(present) + "---:|"]
    keyed = defaultdict(dict)
    failed = {}
    for s in summary:
        if suites and s["suite"] not in suites:
            continue
        keyed[(s["suite"], s["dtype"], s["algo"])][s["group"]] = s
        failed[(s["suite"], s["dtype"], s["algo"])] = s["failed"]
    for key in sorted(keyed, key=lambda k: (k[0], k[1], k[2] != "auto", k[2])):
        cells = []
        for c in present:
            s = keyed[key].get(c)
            cells.append(f"{s['geomean_ratio']:.2f}x ({s['n']})" if s else "—")
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + f" | {failed[key]} |")
    return "\n".join(lines)


def rows_markdown(rows: list, with_peak: bool) -> str:
    head = ["suite", "layer", "N", "shape", "dtype", "pass", "algo", "gpuconv ms", "torch ms", "ratio",
            "gpuconv rate", "torch rate"]
    if with_peak:
        head += ["gpuconv % peak", "torch % peak"]
    head += ["err gpuconv", "err torch", "check"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        unit = r.get("unit", "")
        cells = [r["suite"], f"{r['network']} {r['title']}", str(r["N"]), r["shape"], r["dtype"], r["pass"],
                 r["algo"] + (f" ({r['algo_chosen']})" if r.get("algo_chosen") else ""), _num(r.get("gpuconv_ms")), _num(r.get("torch_ms")),
                 (f"**{r['ratio']:.2f}x**" if r.get("ratio") else "—"),
                 f"{_num(r.get('gpuconv_rate'))} {unit}" if r.get("gpuconv_rate") else "—",
                 f"{_num(r.get('torch_rate'))} {unit}" if r.get("torch_rate") else "—"]
        if with_peak:
            cells += [_num(r.get("gpuconv_pct_peak"), 2), _num(r.get("torch_pct_peak"), 2)]
        check = "ok" if r.get("ok") else ("ERROR: " + r["error"][:80].replace("|", "/") if r.get("error") else "FAIL")
        cells += [_err(r.get("err_gpuconv")), _err(r.get("err_torch")), check]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def meta_markdown(meta: dict, keys) -> str:
    lines = []
    for k in keys:
        if k in meta and meta[k] not in (None, "", {}, []):
            v = meta[k]
            if isinstance(v, (dict, list)):
                v = json.dumps(v, default=str)
            lines.append(f"- **{k}**: `{v}`")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ plot

_COLORS = {"forward": "#1f77b4", "input grad": "#d62728", "weight grad": "#2ca02c"}
_MARKERS = {"forward": "o", "input grad": "^", "weight grad": "s"}


def plot(path, rows: list, panels: list, title: str) -> None:
    """Ratio per layer as a horizontal dot plot: layers as labelled rows, a log ratio axis, one marker per
    pass, a line at 1.0 (parity with PyTorch). `panels` holds (suite, dtype, algo) keys, or lists of them:
    each list is one row of the figure, with its own layer labels (so a suite's batch sizes can be shown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = [list(p) for p in panels] if panels and isinstance(panels[0], list) else [list(panels)]
    grid = [[p for p in line if any(_in_panel(r, p) and r.get("ratio") for r in rows)] for line in grid]
    grid = [line for line in grid if line]
    if not grid:
        return
    n_cols = max(len(line) for line in grid)
    shown = [r for r in rows if any(_in_panel(r, p) for line in grid for p in line) and r.get("ratio")]
    lo = min(min(r["ratio"] for r in shown), 0.5) / 1.4
    hi = max(max(r["ratio"] for r in shown), 2.0) * 1.9  # room for the value labels right of the dots
    labels = [_row_labels(rows, line) for line in grid]
    heights = [0.4 * len(order) + 1.1 for _, order in labels]
    fig, axes = plt.subplots(len(grid), n_cols, figsize=(4.4 * n_cols + 3.4, sum(heights) + 0.9),
                             squeeze=False, layout="constrained", gridspec_kw={"height_ratios": heights})
    for i, line in enumerate(grid):
        label_of, order = labels[i]
        for j in range(n_cols):
            ax = axes[i][j]
            if j >= len(line):
                ax.set_visible(False)
                continue
            _panel(ax, rows, line[j], label_of, order, lo, hi, matplotlib)
            ax.set_yticks(range(len(order)))
            ax.set_yticklabels(order if j == 0 else [], fontsize=8.5)
    handles = [plt.Line2D([], [], color=_COLORS[k], marker=_MARKERS[k], linestyle="", markersize=7,
                          markeredgecolor="black", markeredgewidth=0.4, label=k) for k in _COLORS]
    handles.append(plt.Line2D([], [], color="0.6", marker="o", linestyle="", alpha=0.35, markersize=7,
                              label="check failed"))
    # wrapped: a long title (device, driver, versions) would run past the figure's left edge
    fig.suptitle("\n".join(textwrap.wrap(title, 90)), fontsize=11)
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8.5, frameon=False)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _row_labels(rows, line):
    """(label function, ordered labels) for one figure row: the batch size joins the label when each layer
    has one batch size in this row."""
    shown = [r for r in rows if any(_in_panel(r, p) for p in line)]
    batches = defaultdict(set)
    for r in shown:
        batches[r["layer"]].add(r["N"])
    with_n = all(len(ns) == 1 for ns in batches.values())

    def label_of(r):
        return f"{r['network']} {r['title']}" + (f" (N={r['N']})" if with_n else "")

    order = []
    for r in shown:
        if label_of(r) not in order:
            order.append(label_of(r))
    return label_of, order


def _panel(ax, rows, key, label_of, order, lo, hi, matplotlib):
    for i in range(0, len(order), 2):
        ax.axhspan(i - 0.5, i + 0.5, color="0.95", zorder=0)
    for r in rows:
        if not _in_panel(r, key) or not r.get("ratio"):
            continue
        kind = PASS_LABEL[r["pass"]]
        y = order.index(label_of(r)) + {"forward": -0.24, "input grad": 0.0, "weight grad": 0.24}[kind]
        ax.scatter(r["ratio"], y, color=_COLORS[kind], marker=_MARKERS[kind], s=34, zorder=3,
                   edgecolors="black" if r.get("ok") else "none", linewidths=0.4, alpha=1.0 if r.get("ok") else 0.35)
        ax.annotate(f"{r['ratio']:.2f}", (r["ratio"], y), xytext=(5, 0), textcoords="offset points", va="center",
                    fontsize=6.5, color=_COLORS[kind])
    ax.axvline(1.0, color="black", linewidth=1.2, zorder=2)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(len(order) - 0.5, -0.5)
    ax.grid(axis="x", which="both", color="0.85", linewidth=0.6)
    suite, dtype, algo = key
    ax.set_title(f"{suite} · {dtype} · algo={algo}", fontsize=10)
    ax.set_xlabel("PyTorch time / gpuconv time   (← slower · faster →)", fontsize=8.5)
    # 1-2-5 ticks over a narrow range; decades only over a wide one, where 1-2-5 labels would collide
    subs = (1, 2, 5) if hi / lo < 300 else (1,)
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def _in_panel(row, panel):
    return (row["suite"], row["dtype"], row["algo"]) == tuple(panel)


