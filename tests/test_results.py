"""Reading results back: types, means over seeds, attention outcomes and the width verdict by
hand."""

import math

import numpy as np
import pandas as pd
import pytest

from dham_lib.course import answers
from dham_lib.study import results as results_module
from dham_lib.study.results import load_results, markdown_table, summarise
from dham_lib.study.runs import SCORES, make_record, make_run, runs_table


def write(path, entries):
    """entries: (model, width, snr_db, seed, test_acc); the table a sweep exports of them
    (a width that the model lacks, such as the oracle's, is ignored)."""
    records = []
    for model, width, snr, seed, acc in entries:
        run = make_run(model, seed, width=width, snr_db=snr)
        scores = {**dict.fromkeys(SCORES, math.nan), "test_acc": acc}
        records.append(make_record(run, scores, None, "cpu"))
    runs_table(records).to_csv(path, index=False)


@pytest.fixture
def results(tmp_path):
    path = tmp_path / "sweep.csv"
    write(
        path,
        [
            ("oracle", 0, None, 0, 0.96),
            ("oracle", 0, None, 1, 0.98),
            ("dham", 2, None, 0, 0.80),
            ("dham", 2, None, 1, 0.90),  # mean 0.85
            ("dham", 4, None, 0, 0.90),
            ("dham", 4, None, 1, 0.92),  # mean 0.91
            ("dham", 8, None, 0, 0.95),
            ("oracle", 0, 6.0, 0, 0.90),
            ("dham", 2, 6.0, 0, 0.50),
            ("dham", 8, 6.0, 0, 0.70),
        ],
    )
    return path


def test_rows_come_back_typed(results):
    rows = load_results(results)
    assert rows["snr_db"].iloc[0] == math.inf and rows["snr_db"].iloc[-1] == 6.0  # inf: clean
    assert pd.isna(rows["width"].iloc[0]) and rows["width"].iloc[2] == 2  # the oracle has none
    assert rows["test_acc"].dtype == float and math.isnan(rows["iou"].iloc[0])
    assert math.isnan(rows["attention_lr"].iloc[0]) and rows["model"].iloc[0] == "oracle"
    assert rows["attention_lr"].iloc[2] == 0.01
    assert set(rows["uniform_start"].dropna()) == {True}  # a bool, not the text "True"


def test_summary_by_hand(results):
    summary = summarise(load_results(results), metrics=("test_acc",))
    (_, w2), *others = summary.query("model == 'dham' and width == 2 and snr_db == inf").iterrows()
    assert not others and w2["n"] == 2
    assert w2["test_acc_mean"] == pytest.approx(0.85)
    assert w2["test_acc_std"] == pytest.approx(math.sqrt(0.005))  # sample std of 0.8, 0.9


def test_bad_arguments(results, tmp_path):
    with pytest.raises(FileNotFoundError, match="no results"):
        load_results(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="fraction"):
        results_module.attention_outcomes(load_results(results), fraction=1.5)
    with pytest.raises(ValueError, match="unknown"):
        summarise(load_results(results), by=("colour",))


def _cells(line: str) -> list[str]:
    """The cells of one line of a Markdown table, without their padding."""
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_markdown_table(results):
    summary = summarise(load_results(results), metrics=("test_acc", "iou"))
    table = [_cells(line) for line in markdown_table(summary).splitlines()]
    assert table[0] == [
        "model",
        "width",
        "snr_db",
        "test_acc (95% interval)",
        "iou (95% interval)",
        "seeds",
    ]
    # 80% and 90%: t(0.975, 1) = 12.71 times 7.07 / sqrt(2) is 63.5 points, cut at 100%.
    assert ["dham", "2", "clean", "85 (21.5–100)", "–", "2"] in table
    with pytest.raises(ValueError, match="empty"):
        markdown_table(pd.DataFrame())


def test_accuracies_of_larger_canvases_are_shown_in_percent():
    entry = {"model": "dham", "n": 1, "acc_canvas160_mean": 0.5, "acc_canvas160_std": 0.0}
    entry.update(iou_mean=0.5, iou_std=0.0)
    table = markdown_table(pd.DataFrame([entry]), ("acc_canvas160", "iou"))
    assert _cells(table.splitlines()[-1]) == ["dham", "50", "0.5", "1"]


def test_intervals_stop_where_the_metric_does():
    # Three seeds, std 0.2 around an IoU of 0.9 and a centre error of 0.1 px: the t
    # interval (half width 4.30 * 0.2 / sqrt(3) = 0.50) would pass 1 and 0.
    entry = {"model": "dham", "n": 3, "iou_mean": 0.9, "iou_std": 0.2}
    entry.update(centre_error_mean=0.1, centre_error_std=0.2)
    table = markdown_table(pd.DataFrame([entry]), ("iou", "centre_error"))
    assert _cells(table.splitlines()[-1]) == ["dham", "0.9 (0.403–1)", "0.1 (0–0.597)", "3"]


def test_model_summary_orders_models_and_handles_subsets(tmp_path):
    assert results_module.model_summary(tmp_path / "missing.csv").empty
    path = tmp_path / "clean.csv"
    write(
        path,
        [
            ("oracle", 0, None, 0, 0.97),
            ("dham", 16, None, 0, 0.96),
            ("dham", 16, None, 1, 0.94),
            ("dham", 8, None, 0, 0.90),
            ("cnn", 0, None, 0, 0.80),
            ("dham", 16, 6.0, 0, 0.5),
        ],
    )
    summary = results_module.model_summary(path, width=16)
    assert summary["model"].tolist() == ["cnn", "dham", "oracle"]
    dham = summary.iloc[1]
    assert dham["n"] == 2 and dham["test_acc_mean"] == pytest.approx(0.95)
    assert math.isnan(dham["iou_mean"])
    every_width = results_module.model_summary(path)
    assert every_width[["model", "width"]].values.tolist()[1:3] == [["dham", 8], ["dham", 16]]
    assert results_module.model_summary(path, snr_db=6.0)["n"].tolist() == [1]
    from_frame = results_module.model_summary(results_module.load_results(path), width=16)
    pd.testing.assert_frame_equal(from_frame, summary)


def test_wilson_interval_by_hand():
    z = 1.959963984540054
    for successes, trials in ((0, 10), (3, 12), (12, 12)):
        p, n = successes / trials, trials
        centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
        half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
        assert results_module.wilson_interval(successes, trials) == pytest.approx(
            (max(centre - half, 0), min(centre + half, 1)), abs=1e-9
        )


def test_bootstrap_interval_brackets_the_mean_and_is_seeded():
    assert results_module.bootstrap_interval([0.9, 0.9, 0.9]) == (0.9, 0.9)
    assert all(math.isnan(v) for v in results_module.bootstrap_interval([math.nan]))
    coin = [0.0, 1.0] * 200  # mean 0.5, standard error 0.025: the interval is about ±0.049
    low, high = results_module.bootstrap_interval(coin)
    assert low == pytest.approx(0.5 - 0.049, abs=0.01) and high == pytest.approx(
        0.5 + 0.049, abs=0.01
    )
    assert results_module.bootstrap_interval(coin, seed=3) == results_module.bootstrap_interval(
        coin, seed=3
    )


def test_by_setting_groups_by_what_varies_within_a_model(results):
    table = results_module.by_setting(load_results(results), metrics=("test_acc",))
    # In the table's order (the data's settings, then the model's); not k, stride: per model.
    assert list(table.columns[:4]) == ["model", "snr_db", "width", "n"]
    (_, clean_4), *others = table.query("model == 'dham' and width == 4").iterrows()
    assert not others and clean_4["n"] == 2 and clean_4["test_acc_mean"] == pytest.approx(0.91)


# Student's t at 0.975 with 50/17 degrees of freedom (scipy.stats.t.ppf(0.975, 50 / 17)).
T_QUANTILE = 3.21876


def test_difference_interval_by_hand():
    # Welch by hand: variances 1 and 4 over 3 runs each, so the standard error is
    # sqrt(1/3 + 4/3) and the Welch-Satterthwaite degrees of freedom are
    # (5/3)^2 / ((1/3)^2/2 + (4/3)^2/2) = 50/17, where t(0.975) = T_QUANTILE.
    a, b = [1.0, 2.0, 3.0], [-2.0, 0.0, 2.0]
    difference, low, high = results_module.difference_interval(a, b)
    assert difference == pytest.approx(2.0)
    assert (high - low) / 2 == pytest.approx(T_QUANTILE * math.sqrt(5 / 3), rel=1e-4)
    assert (low + high) / 2 == pytest.approx(difference)
    assert math.isnan(results_module.difference_interval([1.0], b)[1])
    with pytest.raises(ValueError, match="at least one run"):
        results_module.difference_interval([math.nan], b)


def test_differences_from_reads_each_rival_against_the_reference():
    runs = pd.DataFrame(
        {
            "model": ["dham"] * 3 + ["oracle"] * 3 + ["pooled_cnn"] * 3 + ["stn"],
            "width": [16] * 3 + [0] * 3 + [16] * 3 + [0],
            "test_acc": [1.0, 2.0, 3.0, -2.0, 0.0, 2.0, 10.0, 11.0, 12.0, 5.0],
        }
    )
    table = results_module.differences_from(runs).set_index("model")
    # Against the by-hand case above: +2.0 with an interval of +-T_QUANTILE*sqrt(5/3), a tie.
    assert table.loc["oracle", "difference"] == pytest.approx(2.0)
    half = T_QUANTILE * math.sqrt(5 / 3)
    assert table.loc["oracle", "low"] == pytest.approx(2.0 - half, rel=1e-4)
    assert table.loc["oracle", "verdict"] == "a tie"
    assert table.loc["pooled_cnn", "difference"] == pytest.approx(-9.0)
    assert table.loc["pooled_cnn", "verdict"] == "dham behind"
    assert table.loc["pooled_cnn", "runs"] == 3
    assert math.isnan(table.loc["stn", "low"])
    assert table.loc["stn", "verdict"].startswith("no interval")


# ---------------------------------- the attention outcomes of docs/conventions.md, by hand


def _runs(entries):
    """A results frame of (model, width, snr_db, seed, test_acc, centre_error) rows."""
    columns = ["model", "width", "snr_db", "seed", "test_acc", "centre_error"]
    return pd.DataFrame(entries, columns=columns)


def test_found_threshold_is_a_quarter_of_the_mean_digit_side():
    # Digits are 24–40% of the side: mean 32% of 120 px = 38.4 px, a quarter 9.6 px.
    assert results_module.found_threshold() == pytest.approx(9.6)
    assert results_module.found_threshold(240) == pytest.approx(19.2)


def test_attention_outcomes_by_hand():
    frame = _runs(
        [
            ("oracle", 0, 0.0, 0, 0.90, np.nan),  # bar 0.81 for seed 0
            ("oracle", 0, 0.0, 1, 0.80, np.nan),  # bar 0.72 for seed 1
            ("dham", 2, 0.0, 0, 0.85, 3.0),  # found, 0.85 >= 0.81: read
            ("dham", 2, 0.0, 1, 0.70, 3.0),  # found, 0.70 < 0.72: misread
            ("dham", 4, 0.0, 0, 0.90, 12.0),  # 12 px off: never found, however accurate
            ("dham", 4, 0.0, 1, 0.75, 9.5),  # under 9.6 px, 0.75 >= 0.72: read
            ("dham", 4, 3.0, 0, 0.95, 1.0),  # no oracle at 3 dB: left out
        ]
    )
    runs = results_module.attention_outcomes(frame)
    assert list(runs.index) == [2, 3, 4, 5]
    assert list(runs["oracle_acc"]) == [0.90, 0.80, 0.90, 0.80]
    assert list(runs["outcome"]) == ["read", "misread", "never found", "read"]
    strict = results_module.attention_outcomes(frame, threshold=5.0)
    assert list(strict["outcome"]) == ["read", "misread", "never found", "never found"]
    table = results_module.outcome_table(runs)
    assert table[["width", "runs", "read", "misread", "never found"]].values.tolist() == [
        [2, 2, 1, 1, 0],
        [4, 2, 1, 0, 1],
    ]
    assert table["found"].tolist() == [1.0, 0.5]
    assert table.loc[1, "acc_found"] == pytest.approx(0.75)  # one run: no interval
    assert math.isnan(table.loc[1, "acc_low"])
    shown = results_module.outcome_markdown(table)
    assert "50% (9%–91%)" in shown and "| 75.0%  " in shown  # Wilson 1 of 2; one run bare
    with pytest.raises(ValueError, match="one run per SNR and seed"):
        results_module.attention_outcomes(pd.concat([frame, frame.iloc[:1]]))


def _additive_runs() -> pd.DataFrame:
    """Widths 2 and 4 at 0 and 3 dB, seeds 0–3: found in 1, 2 (width 2) and 2, 3 (width 4)
    of 4 runs. The log-odds of each cell, ln(1/3), 0 and 0, ln 3, are additive: a doubling
    of width adds ln 3 at either SNR, so the logit's width effect is ln 3, its interaction 0."""
    found = {(2, 0.0): 1, (2, 3.0): 2, (4, 0.0): 2, (4, 3.0): 3}
    entries = []
    for (width, snr), count in found.items():
        for seed in range(4):
            entries.append(("oracle", 0, snr, seed, 0.9, np.nan) if width == 2 else None)
            entries.append(("dham", width, snr, seed, 0.9, 1.0 if seed < count else 30.0))
    return _runs([entry for entry in entries if entry is not None])


def test_found_trend_by_hand():
    frame = _additive_runs()
    trend = results_module.found_trend(frame)
    assert (trend["runs"], trend["found"]) == (16, 8)
    assert trend["width"] == pytest.approx(math.log(3), abs=1e-6)
    assert trend["interaction"] == pytest.approx(0.0, abs=1e-6)
    # Standard errors from the Fisher information X'WX, W = p(1 - p), and the sandwich over
    # (width, seed) clusters with statsmodels' small-sample factor G/(G-1) (N-1)/(N-K).
    runs = results_module.attention_outcomes(frame)
    x = np.column_stack([np.ones(16), np.log2(runs["width"]), runs["snr_db"]])
    p = 1 / (1 + np.exp(-(x @ [-math.log(3) * 2, math.log(3), math.log(3) / 3])))
    assert p[[0, 4, 8, 12]] == pytest.approx([0.25, 0.5, 0.5, 0.75])  # the cells' shares
    bread = np.linalg.inv(x.T @ (x * (p * (1 - p))[:, None]))
    assert trend["width_se"] == pytest.approx(math.sqrt(bread[1, 1]), rel=1e-4)
    scores = x * (runs["found"].to_numpy() - p)[:, None]
    clusters = runs.groupby(["width", "seed"]).ngroup().to_numpy()
    summed = np.array([scores[clusters == g].sum(axis=0) for g in range(8)])
    sandwich = bread @ summed.T @ summed @ bread * 8 / 7 * 15 / 13
    assert trend["width_se_clustered"] == pytest.approx(math.sqrt(sandwich[1, 1]), rel=1e-4)
    table = results_module.found_sensitivity(frame, thresholds=(None, 5.0))
    assert table["threshold"].tolist() == [9.6, 5.0] and table["found"].tolist() == [8, 8]


def test_report_writes_the_attention_outcomes_and_the_width_trend(tmp_path, capsys):
    frame = _additive_runs().assign(iou=0.3, coverage=0.3, train_seconds=1.0)
    frame.to_csv(tmp_path / "sweep.csv", index=False)
    results_module.report(tmp_path)
    out = capsys.readouterr().out
    assert "## Attention outcomes (found under 9.6 px)" in out
    outcomes = out.split("## Attention outcomes")[1].split("## Does width")[0]
    rows = [_cells(line)[:3] for line in outcomes.splitlines() if line.startswith("|")][2:]
    # In the sweep's order, noisier further down: SNR, width, runs.
    assert rows == [["3 dB", "2", "4"], ["3 dB", "4", "4"], ["0 dB", "2", "4"], ["0 dB", "4", "4"]]
    assert "| 9.6 px        | 8 of 16" in out  # the trend at the quarter side
    assert (tmp_path / "figures" / "sweep_outcomes.png").stat().st_size > 0
    assert not (tmp_path / "figures" / "sweep_iou.png").exists()
    _additive_runs().assign(iou=0.3, coverage=0.3, train_seconds=1.0, centre_error=1.0).to_csv(
        tmp_path / "sweep.csv", index=False
    )
    results_module.report(tmp_path)
    assert "Nothing to fit: 16 of 16 noisy runs found it." in capsys.readouterr().out


def test_report_draws_the_outcomes_by_width_in_a_panel_pair_per_snr(tmp_path, monkeypatch):
    from dham_lib.study import figures

    drawn = {}
    monkeypatch.setattr(figures, "save", lambda figure, path: drawn.update({path.name: figure}))
    frame = _additive_runs().assign(iou=0.3, coverage=0.3, train_seconds=1.0)
    frame.to_csv(tmp_path / "sweep.csv", index=False)
    results_module.report(tmp_path)
    fig = drawn["sweep_outcomes.png"]
    assert len(fig.axes) == 4 and all(ax.get_legend() is None for ax in fig.axes)
    found_3db, found_0db = fig.axes[0], fig.axes[1]  # the top row, 3 dB first
    assert found_3db.get_title() == "3 dB (4 runs a width)"
    assert found_0db.get_title() == "0 dB (4 runs a width)"
    # 3 dB: 2 and 3 of 4 runs found it at widths 2 and 4; 0 dB: 1 and 2 of 4.
    assert list(found_3db.lines[0].get_ydata()) == pytest.approx([50.0, 75.0])
    assert list(found_0db.lines[0].get_ydata()) == pytest.approx([25.0, 50.0])
    assert [t.get_text() for t in fig.axes[2].get_xticklabels()] == ["2", "4"]


def test_found_trend_needs_both_outcomes():
    frame = _additive_runs().assign(centre_error=1.0)
    with pytest.raises(ValueError, match="nothing to fit"):
        results_module.found_trend(frame)


def test_exercise_checks_say_right_or_wrong_without_the_answer(capsys):
    frame = _runs(
        [
            ("oracle", 0, 0.0, 0, 0.90, np.nan),
            ("oracle", 0, 0.0, 1, 0.80, np.nan),
            ("dham", 2, 0.0, 0, 0.85, 3.0),  # read
            ("dham", 2, 0.0, 1, 0.70, 3.0),  # misread
            ("dham", 2, math.inf, 0, 0.10, 40.0),  # clean: not counted
        ]
    )
    answers.check_outcome_counts(frame, 2, read=1, misread=1, never_found=0)
    assert capsys.readouterr().out.startswith("Correct")
    with pytest.raises(AssertionError):
        answers.check_outcome_counts(frame, 2, read=1, misread=0, never_found=1)
    assert "misread: 0 is too low" in capsys.readouterr().out
    low, high = results_module.wilson_interval(3, 25)
    answers.check_wilson_by_hand(3, 25, low, high)
    with pytest.raises(AssertionError):
        answers.check_wilson_by_hand(3, 25, 3 / 25, high)
    assert str(round(low, 3)) not in capsys.readouterr().out
    answers.check_runs_needed(78.4)
    with pytest.raises(AssertionError):
        answers.check_runs_needed(30)
