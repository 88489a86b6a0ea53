"""Results as pandas tables: means over seeds, intervals, attention outcomes, the width verdict.

``load_results`` reads what :func:`dham_lib.study.runs.sweep` exported (a row per run; a clean
canvas has ``snr_db = inf``; a setting a model lacks is NaN); ``report`` prints it all.
"""

from __future__ import annotations

import math
import os
import typing
from pathlib import Path

import numpy as np
import pandas as pd

from dham_lib import _checks
from dham_lib.models import MODELS
from dham_lib.study.runs import SCALE, SCORES, DataConfig, TrainConfig

# The committed results; `make reproduce` writes its fresh ones elsewhere.
RESULTS_DIR = Path(__file__).resolve().parents[2] / "data" / "results"
CLEAN = math.inf
# No attention, affine or zoom attention, DHAM, then the bound told where the digit is.
MODEL_ORDER = ("cnn", "pooled_cnn", "stn", "stn_zoom", "dham", "oracle")
SUMMARY_METRICS = ("test_acc", "iou", "coverage", "centre_error", "train_seconds")
COMPARISON_METRICS = (*SUMMARY_METRICS, "acc_canvas160", "acc_canvas200")
# What ``report`` reads: the runs on the validation split, else those made before it.
CLEAN_FILES = ("clean_validated.csv", "clean.csv")
SWEEP_FILES = ("sweep_validated.csv", "sweep.csv")
# The columns of every table of runs: a CSV without them is another kind of table.
_RUN_COLUMNS = {"model", "seed", "snr_db", "test_acc"}


def load_results(path: str | os.PathLike) -> pd.DataFrame:
    """The runs of a results table, one row each; raises if it is missing."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no results file at {path}; run the sweep that writes it first")
    frame = pd.read_csv(path)
    if "width" not in frame:  # a table of models without a width setting
        frame["width"] = np.nan
    for config in (DataConfig, TrainConfig, *(model.Config for model in MODELS.values())):
        for name, kind in typing.get_type_hints(config).items():
            if name in frame and kind in (int, int | None):
                # Whole numbers stay whole where a model lacks the setting (pandas' missing int).
                frame[name] = frame[name].astype("Int64")
    frame["snr_db"] = frame["snr_db"].fillna(CLEAN)  # an empty SNR field is a clean canvas
    return frame


def summarise(
    frame: pd.DataFrame,
    by: tuple[str, ...] = ("model", "width", "snr_db"),
    metrics: tuple[str, ...] = SUMMARY_METRICS,
) -> pd.DataFrame:
    """Mean and std over the runs that share ``by`` (in practice: seeds): a row per group in
    order of appearance, ``by``, ``n``, then ``<metric>_mean`` and ``<metric>_std`` per metric
    (NaNs left out; one run's std is 0)."""
    unknown = [name for name in (*by, *metrics) if name not in frame.columns]
    if unknown:
        raise ValueError(f"by and metrics must name result columns, got unknown {unknown}")
    groups = frame.groupby(list(by), sort=False, dropna=False)
    summary = groups[list(metrics)].agg(["mean", "std"])
    summary.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    summary[[f"{m}_std" for m in metrics]] = summary[[f"{m}_std" for m in metrics]].fillna(0.0)
    summary.insert(0, "n", groups.size())
    return summary.reset_index()


def mean_interval(
    mean: float, std: float, n: int, level: float = 0.95, share: bool = False
) -> tuple[float, float]:
    """The ``level`` interval (Student's t) of a mean over ``n`` seeds from their ``std``;
    ``(mean, mean)`` for one seed or no spread. With ``share`` (an accuracy, an IoU) it
    stops at 0 and 1. The error bars of notebooks 05 and 07."""
    from scipy import stats

    if n < 2 or std == 0:  # scipy's t wants a spread
        return mean, mean
    low, high = stats.t.interval(level, n - 1, loc=mean, scale=std / math.sqrt(n))
    return (max(low, 0.0), min(high, 1.0)) if share else (low, high)


def summary_intervals(summary: pd.DataFrame, metric: str, share: bool) -> np.ndarray:
    """:func:`mean_interval` of each row of a :func:`summarise` table: ``[2, rows]``, the
    lows then the highs."""
    rows = zip(summary[f"{metric}_mean"], summary[f"{metric}_std"], summary["n"], strict=True)
    return np.array([mean_interval(*row, share=share) for row in rows]).reshape(-1, 2).T


def bootstrap_interval(
    values, level: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaNs left out), seeded;
    ``(nan, nan)`` for none. With few seeds it is no wider than their spread: read it beside
    ``n``."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(resamples, len(values))).mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def difference_interval(a, b, level: float = 0.95) -> tuple[float, float, float]:
    """``(mean(a) - mean(b), low, high)``: the difference of two sets of runs' means with
    its ``level`` interval (Welch's t), NaNs left out; a NaN interval with fewer than two
    runs on either side."""
    from scipy import stats

    a, b = (np.asarray(values, dtype=float) for values in (a, b))
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) == 0 or len(b) == 0:
        raise ValueError("difference_interval needs at least one run on each side")
    difference = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return difference, math.nan, math.nan
    low, high = stats.ttest_ind(a, b, equal_var=False).confidence_interval(level)
    return difference, float(low), float(high)


def differences_from(
    frame: pd.DataFrame, reference: str = "dham", metric: str = "test_acc"
) -> pd.DataFrame:
    """``metric`` of the ``reference`` model's runs (one setting) minus each other (model,
    width)'s, with :func:`difference_interval` (notebook 07). Columns: model, width,
    difference, low, high, runs (of the other), verdict ("a tie", "<reference> ahead" or
    "behind", "no interval (one run)")."""
    mine = frame.loc[frame["model"] == reference, metric]
    others = frame[frame["model"] != reference].groupby(["model", "width"], dropna=False)
    rows = []
    for (name, width), other in others:
        difference, low, high = difference_interval(mine, other[metric])
        verdict = "a tie" if low <= 0 <= high else f"{reference} {'ahead' if low > 0 else 'behind'}"
        verdict = "no interval (one run)" if math.isnan(low) else verdict
        rows.append((name, width, difference, low, high, len(other), verdict))
    columns = ["model", "width", "difference", "low", "high", "runs", "verdict"]
    return pd.DataFrame(rows, columns=columns)


def wilson_interval(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / trials`` (statsmodels')."""
    from statsmodels.stats.proportion import proportion_confint

    if trials == 0:
        return math.nan, math.nan
    low, high = proportion_confint(successes, trials, alpha=1 - level, method="wilson")
    return float(low), float(high)


def _spans(mids, lows, highs, fmt: str) -> list[str]:
    """``mid (low–high)`` per row in ``fmt``: "–" where ``mid`` is NaN, no interval where
    ``low`` is."""
    spans = []
    for mid, low, high in zip(mids, lows, highs, strict=True):
        interval = "" if math.isnan(low) else f" ({low:{fmt}}–{high:{fmt}})"
        spans.append("–" if math.isnan(mid) else f"{mid:{fmt}}{interval}")
    return spans


def _snr_labelled(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` with its SNRs as :func:`snr_label`."""
    if "snr_db" not in table:
        return table.copy()
    return table.assign(snr_db=table["snr_db"].map(snr_label))


def snr_label(snr_db: float) -> str:
    """``"clean"`` for an infinite SNR, else e.g. ``"6 dB"``."""
    return "clean" if snr_db == CLEAN else f"{snr_db:g} dB"


def is_accuracy(metric: str) -> bool:
    """Whether a result column is an accuracy (a fraction, shown in %)."""
    return metric.endswith("acc") or metric.startswith("acc_")


def is_share(metric: str) -> bool:
    """Whether a result column is a share, whose intervals stop at 0 and 1."""
    return is_accuracy(metric) or metric in ("iou", "coverage")


def markdown_table(summary: pd.DataFrame, metrics: tuple[str, ...] = ("test_acc", "iou")) -> str:
    """A Markdown table of a summary: one line per group, per metric the mean over seeds
    and its 95% interval (Student's t, :func:`mean_interval`, cut at 0 and for shares at
    1; accuracies in %; none for a single seed or no spread), and the number of seeds."""
    if summary.empty:
        raise ValueError("summary must not be empty")
    by = [name for name in summary if name != "n" and not name.endswith(("_mean", "_std"))]
    # A setting a model lacks shows as a dash; a whole number as one.
    table = summary[by].astype(object).where(summary[by].notna(), "–")
    table = table.map(lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)
    table = _snr_labelled(table)
    for metric in metrics:
        scale = 100 if is_accuracy(metric) else 1
        low, high = summary_intervals(summary, metric, is_share(metric))
        low = np.maximum(low, 0.0)  # every result is non-negative
        low = np.where(high > low, low * scale, math.nan)  # no interval where it is empty
        means = summary[f"{metric}_mean"] * scale
        table[f"{metric} (95% interval)"] = _spans(means, low, high * scale, ".3g")
    table["seeds"] = summary["n"]
    return table.to_markdown(index=False)


def model_summary(
    results: str | os.PathLike | pd.DataFrame,
    snr_db: float | None = None,
    background: str = "noise",
    width: int | None = None,
    metrics: tuple[str, ...] = COMPARISON_METRICS,
) -> pd.DataFrame:
    """:func:`summarise` of each model in a results CSV (or its :func:`load_results` frame) at
    ``snr_db`` (None: clean) with ``background``, DHAM at ``width`` only (None: a row per
    width), in :data:`MODEL_ORDER`. Empty for a missing file, so a notebook runs while its
    sweep is still going."""
    if not isinstance(results, pd.DataFrame) and not os.path.exists(results):
        return pd.DataFrame()
    frame = results if isinstance(results, pd.DataFrame) else load_results(results)
    keep = frame["snr_db"] == (CLEAN if snr_db is None else snr_db)
    keep &= frame["background"] == background
    if width is not None:
        keep &= (frame["model"] != "dham") | (frame["width"] == width)
    summary = summarise(frame[keep], metrics=metrics)
    rank = summary["model"].map({m: i for i, m in enumerate(MODEL_ORDER)}).fillna(len(MODEL_ORDER))
    return summary.assign(rank=rank).sort_values(["rank", "width"]).drop(columns="rank")


def by_setting(frame: pd.DataFrame, metrics: tuple[str, ...] = ("val_acc", "test_acc")):
    """:func:`summarise` by model and the settings that vary within a model (the seed aside):
    the table of a pilot or any other results file."""
    settings = [name for name in frame.columns if name not in (*SCORES, "device")]
    varying = {
        name
        for _, runs in frame.groupby("model")
        for name in settings
        # The seed is what is averaged over; the curriculum follows the SNR.
        if name not in ("model", "seed", "curriculum") and runs[name].nunique(dropna=False) > 1
    }
    by = ("model", *(name for name in settings if name in varying))
    return summarise(frame, by=by, metrics=metrics)


# ---------------------------- what an attention run did (docs/conventions.md), notebook 05

OUTCOMES = ("read", "misread", "never found")


def found_threshold(canvas: int = 120) -> float:
    """The centre error (pixels) under which a run *found* its digit: a quarter of the mean
    digit side on ``canvas``-pixel canvases, digits drawn at the runs' scale (``runs.SCALE``,
    24–40% of the side: 9.6 px at 120 px)."""
    return _checks.positive_int("canvas", canvas) * sum(SCALE) / 2 / 4


def attention_outcomes(
    frame: pd.DataFrame, threshold: float | None = None, fraction: float = 0.9
) -> pd.DataFrame:
    """DHAM's runs classified as docs/conventions.md defines (notebook 05): ``found`` when the test
    centre error is under ``threshold`` pixels (default :func:`found_threshold`); a found run
    ``read`` its digit when its test accuracy is at least ``fraction`` of the oracle's on the
    same canvases (same SNR and seed, ``oracle_acc``), else ``misread``; otherwise ``never
    found``. DHAM's rows without an oracle run of their SNR and seed are left out; the rest
    keep their columns and index, with ``oracle_acc``, ``found``, ``read`` and ``outcome``."""
    threshold = found_threshold() if threshold is None else _checks.positive("threshold", threshold)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    oracle = frame[frame["model"] == "oracle"].set_index(["snr_db", "seed"])["test_acc"]
    if oracle.index.duplicated().any():
        raise ValueError("the oracle must have one run per SNR and seed")
    dham = frame[frame["model"] == "dham"]
    keys = pd.MultiIndex.from_arrays([dham["snr_db"], dham["seed"].astype(int)])
    oracle.index = oracle.index.set_levels(oracle.index.levels[1].astype(int), level=1)
    runs = dham.assign(oracle_acc=oracle.reindex(keys).to_numpy())
    runs = runs[runs["oracle_acc"].notna()]
    found = runs["centre_error"] < threshold
    read = found & (runs["test_acc"] >= fraction * runs["oracle_acc"])
    outcome = np.where(read, OUTCOMES[0], np.where(found, OUTCOMES[1], OUTCOMES[2]))
    return runs.assign(found=found, read=read, outcome=outcome)


def outcome_table(
    outcomes: pd.DataFrame, by: str | list[str] = "width", level: float = 0.95
) -> pd.DataFrame:
    """Per ``by`` group (a column or a list of them) of :func:`attention_outcomes`' runs:
    ``runs``, the count of each outcome, the share that found the digit with its Wilson
    interval (``found``, ``found_low``, ``found_high``) and the mean test accuracy of the runs
    that found it with its bootstrap interval (``acc_found``, ``acc_low``, ``acc_high``; no
    interval for one run)."""

    def group(runs: pd.DataFrame) -> pd.Series:
        counts = [int((runs["outcome"] == name).sum()) for name in OUTCOMES]
        found = int(runs["found"].sum())
        accuracy = runs.loc[runs["found"], "test_acc"]
        spread = bootstrap_interval(accuracy, level) if len(accuracy) > 1 else (math.nan,) * 2
        values = [len(runs), *counts, found / len(runs), *wilson_interval(found, len(runs), level)]
        return pd.Series([*values, accuracy.mean(), *spread], index=_OUTCOME_COLUMNS)

    table = outcomes.groupby(by).apply(group).reset_index()
    return table.astype({name: int for name in ("runs", *OUTCOMES)})


_OUTCOME_COLUMNS = ["runs", *OUTCOMES, "found", "found_low", "found_high"]
_OUTCOME_COLUMNS += ["acc_found", "acc_low", "acc_high"]


def outcome_markdown(table: pd.DataFrame) -> str:
    """A Markdown table of :func:`outcome_table`: counts, the share found (95% Wilson) and the
    accuracy of the runs that found the digit (95% bootstrap), in %."""
    shown = _snr_labelled(table.iloc[:, : table.columns.get_loc("runs") + 1 + len(OUTCOMES)])
    shown = shown.rename(columns={"snr_db": "SNR"})
    found = _spans(table["found"], table["found_low"], table["found_high"], ".0%")
    accuracy = _spans(table["acc_found"], table["acc_low"], table["acc_high"], ".1%")
    shown["found the digit (95% Wilson)"] = found
    shown["accuracy when found (95% bootstrap)"] = accuracy
    return shown.to_markdown(index=False)


def found_trend(frame: pd.DataFrame, threshold: float | None = None) -> dict:
    """Does width help a run find the digit, and more so at a lower SNR? Over DHAM's noisy
    runs of :func:`attention_outcomes` (``threshold`` in pixels), logistic regressions of
    ``found`` on ``log2(width) + snr_db`` (the width effect, log-odds per doubling) and on
    ``log2(width) * snr_db`` (the interaction, per dB per doubling; the original's claim
    predicts it negative), each with plain (``_p``, ``_low``, ``_high``) and with
    (width, seed)-clustered standard errors (``_p_clustered``, ``_low_clustered``,
    ``_high_clustered``): one seed's canvases and start recur at every SNR, so a (width,
    seed) pair's runs are not independent. Also ``threshold``, ``runs`` and ``found``."""
    import statsmodels.formula.api as smf

    threshold = found_threshold() if threshold is None else threshold
    data = attention_outcomes(frame, threshold)
    data = data[np.isfinite(data["snr_db"])].assign(
        found=lambda d: d["found"].astype(int), log2_width=lambda d: np.log2(d["width"])
    )
    data = data.reset_index(drop=True)
    result = {"threshold": float(threshold), "runs": len(data), "found": int(data["found"].sum())}
    if result["found"] in (0, len(data)):
        raise ValueError(f"nothing to fit: {result['found']} of {len(data)} noisy runs found it")
    pairs = data.groupby(["width", "seed"]).ngroup().to_numpy()
    clustered = {"cov_type": "cluster", "cov_kwds": {"groups": pairs}}
    terms = {"width": ("found ~ log2_width + snr_db", "log2_width")}
    terms["interaction"] = ("found ~ log2_width * snr_db", "log2_width:snr_db")
    for name, (formula, term) in terms.items():
        for suffix, options in (("", {}), ("_clustered", clustered)):
            fit = smf.logit(formula, data=data).fit(disp=False, **options)
            if not suffix:
                result[name] = float(fit.params[term])
            low, high = fit.conf_int().loc[term]
            fields = {"se": fit.bse[term], "low": low, "high": high, "p": fit.pvalues[term]}
            result.update({f"{name}_{key}{suffix}": float(v) for key, v in fields.items()})
    return result


def found_sensitivity(frame: pd.DataFrame, thresholds=(5.0, None, 10.0)) -> pd.DataFrame:
    """:func:`found_trend` at each threshold (None: :func:`found_threshold`), a row each."""
    return pd.DataFrame([found_trend(frame, threshold) for threshold in thresholds])


def sensitivity_markdown(table: pd.DataFrame) -> str:
    """A Markdown table of :func:`found_sensitivity`: per threshold, the runs that found the
    digit, the width effect and the interaction with their clustered 95% intervals and both
    p-values."""

    def rows(*columns: str):
        return table[list(columns)].itertuples(index=False)

    def effect(name: str, fmt: str) -> list[str]:
        spans = rows(name, f"{name}_low_clustered", f"{name}_high_clustered")
        return [f"{mid:{fmt}} ({low:{fmt}} to {high:{fmt}})" for mid, low, high in spans]

    def p_values(name: str) -> list[str]:
        return [f"{a:.3f} / {b:.3f}" for a, b in rows(f"{name}_p", f"{name}_p_clustered")]

    shown = {
        "found under": [f"{t:g} px" for t in table["threshold"]],
        "runs that found it": [f"{found} of {n}" for found, n in rows("found", "runs")],
        "width effect per doubling (95%, clustered)": effect("width", "+.2f"),
        "p plain / clustered": p_values("width"),
        "width × SNR (95%, clustered)": effect("interaction", "+.3f"),
        "p plain / clustered ": p_values("interaction"),
    }
    return pd.DataFrame(shown).to_markdown(index=False)


def _report_sweep(swept: Path, out: Path, figures) -> None:
    """The sweep's table and figures, then DHAM's attention outcomes (docs/conventions.md) by
    SNR and width and the found-by-width trend at the quarter-side threshold (``report``)."""
    runs = load_results(swept)
    summary = summarise(runs)
    print(f"## Sweep ({swept.name})\n\n" + markdown_table(summary) + "\n")
    outcomes = attention_outcomes(runs)
    if outcomes.empty:
        print("No DHAM run has an oracle run of its SNR and seed: no attention outcomes.\n")
        return
    table = outcome_table(outcomes, by=["snr_db", "width"])
    table = table.sort_values(["snr_db", "width"], ascending=[False, True])
    print(f"## Attention outcomes (found under {found_threshold():g} px)\n")
    print(outcome_markdown(table) + "\n")
    figures.save(figures.plot_found_by_width(outcomes), out / "sweep_outcomes.png")
    try:
        trend = sensitivity_markdown(found_sensitivity(runs, thresholds=(None,)))
    except ValueError as error:  # every noisy run found the digit, or none did
        trend = f"{str(error).capitalize()}."
    print(f"## Does width help a run find the digit? (noisy runs, logit)\n\n{trend}\n")


def report(folder: str | os.PathLike) -> None:
    """Print the tables and the width verdict of the CSVs in ``folder`` and draw their
    figures into ``folder/figures`` (``python -m dham_lib report``); every other CSV there
    as a table by the settings that vary in it."""
    from dham_lib.study import figures

    folder = Path(folder)
    clean, swept = (
        next((folder / name for name in names if (folder / name).exists()), None)
        for names in (CLEAN_FILES, SWEEP_FILES)
    )
    if clean is None and swept is None:
        raise FileNotFoundError(f"none of {', '.join((*CLEAN_FILES, *SWEEP_FILES))} in {folder}")
    out = _checks.writable_folder("the figures folder", folder / "figures")
    if clean is not None:
        runs = load_results(clean)
        summary = summarise(runs)
        print(f"## Clean canvases ({clean.name})\n\n" + markdown_table(summary, SUMMARY_METRICS))
        figures.save(figures.plot_model_comparison(summary), out / "clean_models.png")
        sizes = ("test_acc", "acc_canvas160", "acc_canvas200")
        summary = summarise(runs, metrics=sizes)
        print(f"\n## Larger canvases (trained on 120×120)\n\n{markdown_table(summary, sizes)}\n")
        titles = {"test_acc": "accuracy on 120×120 canvases (%)"}
        figure = figures.plot_model_comparison(summary, sizes, titles=titles)
        figures.save(figure, out / "clean_canvas_sizes.png")
    if swept is not None:
        _report_sweep(swept, out, figures)
    for path in sorted(set(folder.glob("*.csv")) - {clean, swept}):
        if _RUN_COLUMNS.issubset(pd.read_csv(path, nrows=0).columns):
            table = markdown_table(by_setting(load_results(path)), ("val_acc", "test_acc"))
        else:  # a script's or a benchmark's own table (scripts/lock_on_*.py, scaling_costs.csv)
            table = "not a sweep file: read it with pandas"
        print(f"## {path.name}\n\n{table}\n")
    print(f"figures written to {out}")
