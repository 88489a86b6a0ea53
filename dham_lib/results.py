"""Reading experiment results back: typed rows, means over seeds, the width verdict (notebook 05).

The CSVs that ``dham_lib.experiments.sweep`` writes hold text; ``load_results``
types them again, ``summarise`` averages over seeds, and ``narrowest_widths``
answers the original's claim: for each SNR, the narrowest attention width whose
mean accuracy reaches a fraction of the oracle's at that SNR.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import statistics
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from dham_lib import _checks
from dham_lib.experiments import CELL_COLUMNS, RESULT_COLUMNS, Cell, read_rows

_FIELD_TYPES = {field.name: field.type for field in dataclasses.fields(Cell)}


def _typed(name: str, text: str):
    """One CSV field back to its Python value (None for an empty optional field)."""
    if name in RESULT_COLUMNS:
        return float(text) if text not in ("", "nan") else math.nan
    kind = _FIELD_TYPES.get(name, "str")
    if text == "":
        return None
    if "int" in kind:
        return int(text)
    if "float" in kind:
        return float(text)
    return text


def load_results(path: str | os.PathLike) -> list[dict]:
    """Rows of a results CSV with numbers as numbers; raises if the file is missing."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no results file at {path}; run the sweep that writes it first")
    return [
        {name: _typed(name, text) for name, text in row.items() if name is not None}
        for row in read_rows(path)
    ]


def summarise(
    rows: Iterable[dict],
    by: tuple[str, ...] = ("model", "width", "snr_db"),
    metrics: tuple[str, ...] = ("test_acc", "iou", "coverage", "centre_error", "train_seconds"),
) -> list[dict]:
    """Mean and standard deviation over the rows that share ``by`` (in practice: seeds).

    Returns one dict per group with the ``by`` fields, ``n`` (rows in the group),
    and ``<metric>_mean`` and ``<metric>_std`` (0 for a single row) per metric.
    """
    unknown = [name for name in (*by, *metrics) if name not in (*CELL_COLUMNS, *RESULT_COLUMNS)]
    if unknown:
        raise ValueError(f"by and metrics must name result columns, got unknown {unknown}")
    groups = defaultdict(list)
    for row in rows:
        groups[tuple(row[name] for name in by)].append(row)
    summary = []
    for key, members in groups.items():
        entry = dict(zip(by, key, strict=True), n=len(members))
        for metric in metrics:
            values = [m[metric] for m in members if not math.isnan(m[metric])]
            entry[f"{metric}_mean"] = statistics.fmean(values) if values else math.nan
            entry[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.append(entry)
    return summary


def narrowest_widths(rows: Iterable[dict], fraction: float = 0.9, statistic: str = "mean") -> dict:
    """For each SNR, the narrowest DHAM width whose accuracy over seeds reaches
    ``fraction`` of the oracle's mean accuracy at that SNR (None if no width tried does).

    ``statistic="mean"`` asks that the width works on average over seeds (reliably);
    ``"best"`` that its best seed does, i.e. that the width *can* work, whatever the
    luck of training. Keys are the SNRs in dB (None for clean) that have both DHAM and
    oracle results; an SNR whose oracle has not run yet cannot be judged and is left out.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    _checks.option("statistic", statistic, ("mean", "best"))
    rows = list(rows)
    summary = summarise(rows, metrics=("test_acc",))
    oracle = {s["snr_db"]: s["test_acc_mean"] for s in summary if s["model"] == "oracle"}
    accuracy = defaultdict(list)
    for row in rows:
        if row["model"] == "dham" and row["snr_db"] in oracle:
            accuracy[row["snr_db"], row["width"]].append(row["test_acc"])
    verdict = {}
    for snr in sorted({snr for snr, _ in accuracy}, key=_snr_order):
        widths = sorted(width for s, width in accuracy if s == snr)
        score = {
            w: statistics.fmean(accuracy[snr, w]) if statistic == "mean" else max(accuracy[snr, w])
            for w in widths
        }
        hits = [w for w in widths if score[w] >= fraction * oracle[snr]]
        verdict[snr] = hits[0] if hits else None
    return verdict


def runs_reaching(rows: Iterable[dict], fraction: float = 0.9, group: str = "snr_db") -> dict:
    """How many single DHAM runs reached ``fraction`` of the oracle's mean accuracy at
    their SNR: ``{key: (reached, runs)}`` per SNR (``group="snr_db"``, clean first) or
    per attention width (``group="width"``), over everything else in ``rows``.

    A run far below it is one whose attention never locked on to the digit, so this
    counts lock-on failures, which a mean over seeds would blur. Runs at an SNR
    without an oracle result are left out.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    _checks.option("group", group, ("snr_db", "width"))
    rows = list(rows)
    oracle = {
        s["snr_db"]: s["test_acc_mean"]
        for s in summarise(rows, metrics=("test_acc",))
        if s["model"] == "oracle"
    }
    counts = {}
    for row in rows:
        if row["model"] == "dham" and row["snr_db"] in oracle:
            reached, runs = counts.get(row[group], (0, 0))
            hit = row["test_acc"] >= fraction * oracle[row["snr_db"]]
            counts[row[group]] = (reached + hit, runs + 1)
    order = _snr_order if group == "snr_db" else None
    return {key: counts[key] for key in sorted(counts, key=order)}


def _snr_order(snr) -> float:
    """Clean first, then from high SNR (little noise) to low."""
    return -math.inf if snr is None else -snr


def is_accuracy(metric: str) -> bool:
    """Whether a result column is an accuracy (a fraction, shown in %)."""
    return metric.endswith("acc") or metric.startswith("acc_")


def markdown_table(summary: Iterable[dict], metrics: tuple[str, ...] = ("test_acc", "iou")) -> str:
    """A Markdown table of a summary: one line per group, ``mean ± std`` per metric
    (accuracies in %), and the number of seeds."""
    summary = list(summary)
    if not summary:
        raise ValueError("summary must not be empty")
    by = [name for name in ("model", "width", "snr_db", "background") if name in summary[0]]
    header = [*by, *metrics, "seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in summary:
        cells = [
            "clean" if name == "snr_db" and entry[name] is None else str(entry[name]) for name in by
        ]
        for metric in metrics:
            mean, std = entry[f"{metric}_mean"], entry[f"{metric}_std"]
            scale = 100 if is_accuracy(metric) else 1
            cells.append("–" if math.isnan(mean) else f"{mean * scale:.3g} ± {std * scale:.2g}")
        cells.append(str(entry["n"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results_dir() -> Path:
    """The repository's ``data/results`` folder, where the committed result CSVs live."""
    return Path(__file__).resolve().parent.parent / "data" / "results"


def claim_verdict(widths: dict) -> str:
    """One sentence on the original's claim ("noisier input needs wider attention
    convolutions"), from ``narrowest_widths``' answer.

    The data support the claim when the narrowest sufficient width never shrinks
    as the SNR falls and grows at least once; an SNR where no width suffices
    counts as needing more than the widest tried.
    """
    if not widths:
        raise ValueError("widths must name at least one SNR; run the sweep first")
    order = sorted(widths, key=_snr_order)
    needed = [math.inf if widths[snr] is None else widths[snr] for snr in order]
    shown = ", ".join(
        f"{'clean' if snr is None else f'{snr:g} dB'}: {_width_text(widths[snr])}" for snr in order
    )
    if len(order) < 2:
        return f"Only one SNR has results ({shown}): too little to test the claim."
    never_shrinks = all(a <= b for a, b in itertools.pairwise(needed))
    grows = needed[-1] > needed[0]
    if never_shrinks and grows:
        return f"The data support the claim: the width needed grows as the SNR falls ({shown})."
    if all(n == needed[0] for n in needed):
        return f"The data do not support the claim: the same width suffices at every SNR ({shown})."
    return (
        f"The data do not support the claim: the width needed is not monotone in the SNR ({shown})."
    )


def _width_text(width) -> str:
    return "no width tried suffices" if width is None else f"width {width}"
