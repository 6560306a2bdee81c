"""One table from the runs of an old-vs-new comparison (compare_versions.sh, compare_unverified.sh).

    python bench/side_by_side.py OUTDIR [RUN ...] [--predictions FILE]     (default runs: old new old2)

Reads OUTDIR/<run>/results.json of each run and prints, per (suite, layer, dtype, pass, algo) measured in
all of them, each run's median ms, the new/old ratio (old = the mean of the runs other than 'new') and the
spread of the old runs, so a change is read against the noise of the same call. With --predictions (e.g.
bench/notes/predictions.json), rows of the batch suite with algo auto that have a prediction get it and
new / predicted, so a session reads what it predicted against what it measured in one table.
"""

from __future__ import annotations

import json
import os
import sys


def load(path: str) -> dict:
    rows = json.load(open(path))["rows"]
    return {(r["suite"], r["layer"], r["dtype"], r["pass"], r["algo"]): r["gpuconv_ms"] for r in rows
            if r.get("ok") and r.get("gpuconv_ms")}


def load_predictions(path: str) -> dict:
    """(layer, dtype, pass) -> predicted ms, from a predictions file (bench/notes/predictions.json)."""
    return {(r["layer"], r["dtype"], r["pass"]): r["predicted"] for r in json.load(open(path))["rows"]}


def table(runs: dict, predictions: dict | None = None) -> list:
    """runs: name -> {key: ms}. Markdown lines; 'new' is compared with the mean of the other runs, and with
    its prediction where ``predictions`` has one (batch suite, algo auto)."""
    names = list(runs)
    olds = [n for n in names if n != "new"]
    keys = [k for k in runs[names[0]] if all(k in runs[n] for n in names)]
    extra = " | predicted ms | new / predicted" if predictions is not None else ""
    lines = ["| suite | layer | dtype | pass | algo | " + " | ".join(f"{n} ms" for n in names)
             + f" | new / old | old spread{extra} |",
             "|---|---|---|---|---|" + "---:|" * (len(names) + 2 + (2 if extra else 0))]
    for k in keys:
        old = [runs[n][k] for n in olds]
        mean_old = sum(old) / len(old)
        cells = " | ".join(f"{runs[n][k]:.4g}" for n in names)
        ratio = f"{runs['new'][k] / mean_old:.3f}" if "new" in runs else "-"
        spread = f"{(max(old) - min(old)) / mean_old:.1%}" if len(old) > 1 else "-"
        row = f"| {' | '.join(str(p) for p in k)} | {cells} | {ratio} | {spread}"
        if predictions is not None:
            suite, layer, dtype, pass_name, algo = k
            predicted = predictions.get((layer, dtype, pass_name)) if (suite, algo) == ("batch", "auto") else None
            if predicted is None or "new" not in runs:
                row += " | - | -"
            else:
                row += f" | {predicted:.4g} | {runs['new'][k] / predicted:.2f}"
        lines.append(row + " |")
    return lines


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    predictions = None
    if "--predictions" in argv:
        i = argv.index("--predictions")
        predictions = load_predictions(argv[i + 1])
        del argv[i:i + 2]
    out, names = argv[0], (argv[1:] or ["old", "new", "old2"])
    runs = {}
    for n in names:
        path = os.path.join(out, n, "results.json")
        if os.path.exists(path):
            runs[n] = load(path)
        else:
            print(f"(no {path})")
    if len(runs) >= 2:
        print("\n".join(table(runs, predictions)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
