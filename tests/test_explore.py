"""Looking inside trained models: views, statistics, result summaries, stride offsets."""

import csv
import dataclasses
import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from dham_lib import explore
from dham_lib.data import TranslatedMNIST
from dham_lib.dham import DHAM
from dham_lib.experiments import CELL_COLUMNS, RESULT_COLUMNS, Cell
from dham_lib.interactive import View
from dham_lib.models import DHAMClassifier, PlainCNN
from dham_lib.pmf import expected_norm, spatial_softmax
from dham_lib.sampling import to_pixels


@pytest.fixture(autouse=True)
def agg_backend():
    """Draw off-screen, and close every figure after each test."""
    matplotlib.use("Agg")
    yield
    plt.close("all")


def _digits(n=12):
    """Synthetic 28×28 'digits': a bright bar in each, labels 0..9 cycling."""
    rng = np.random.default_rng(0)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for i in range(n):
        row = rng.integers(6, 22)
        images[i, row - 2 : row + 2, 4:24] = 255
    return images, np.arange(n) % 10


def _model(**kwargs):
    torch.manual_seed(0)
    return DHAMClassifier(width=4, stride=2, **kwargs)


def _assert_labelled(fig: Figure) -> None:
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), ax


def test_attend_matches_the_model_and_leaves_it_unchanged():
    model = _model()
    torch.nn.init.normal_(model.attention.conv2.weight, std=0.1)  # a non-uniform PMF
    canvases = torch.rand(3, 1, 40, 48)
    model.train()
    seen = explore.attend(model, canvases)
    assert model.training and model.dham.temperature == 1.0
    prediction = model.eval()(canvases)
    torch.testing.assert_close(seen.probabilities, torch.softmax(prediction.logits, dim=1))
    torch.testing.assert_close(seen.boxes, prediction.boxes)
    torch.testing.assert_close(seen.glimpses, prediction.glimpses)
    assert seen.pmf.shape == (3, 1, 20, 24) and seen.tx.shape == (3, 1)


def test_attend_temperature_sharpens_without_touching_the_model():
    model = _model()
    torch.nn.init.normal_(model.attention.conv2.weight, std=0.5)
    canvases = torch.rand(2, 1, 40, 40)
    cold = explore.attend(model, canvases, temperature=0.25)
    warm = explore.attend(model, canvases, temperature=4.0)
    with torch.no_grad():
        logits = model.attention(canvases)
    torch.testing.assert_close(cold.pmf, spatial_softmax(logits, 0.25))
    assert (cold.pmf.flatten(1).amax(1) > warm.pmf.flatten(1).amax(1)).all()
    assert model.dham.temperature == 1.0
    with pytest.raises(ValueError, match="temperature"):
        explore.attend(model, canvases, temperature=0.0)
    l1 = explore.attend(model, canvases, norm=1)
    torch.testing.assert_close(l1.s, expected_norm(l1.pmf, p=1))
    assert model.dham.norm == 2
    with pytest.raises(ValueError, match="norm"):
        explore.attend(model, canvases, norm=3)
    with pytest.raises(TypeError, match="DHAMClassifier"):
        explore.attend(PlainCNN(), canvases)


def test_attention_explorer_view_and_numbers():
    images, labels = _digits()
    dataset = TranslatedMNIST(images, labels, canvas=60, seed=1)
    view = explore.attention_explorer(_model(), dataset, index=2, temperature=1.0)
    assert isinstance(view, View) and isinstance(view.figure, Figure)
    _assert_labelled(view.figure)
    numbers = view.numbers
    assert numbers["label"] == int(labels[2])
    assert 0 <= numbers["prediction"] <= 9 and 0 < numbers["confidence"] <= 1
    _, _, true_box = dataset[2]
    # The untrained model's uniform PMF gives the centred box of half-side ~0.77.
    assert abs(numbers["tx"]) < 1e-5 and abs(numbers["ty"]) < 1e-5
    assert numbers["side_px"] == pytest.approx(numbers["s"] * 59, rel=1e-5)
    assert 0 <= numbers["IoU"] <= numbers["coverage"] <= 1
    with pytest.raises(ValueError, match="index"):
        explore.attention_explorer(_model(), dataset, index=len(dataset))


def test_clutter_explorer_keeps_the_digit_and_adds_pieces():
    images, labels = _digits()
    model = _model()
    few = explore.clutter_explorer(model, images, labels, index=0, n_clutter=0, canvas=60)
    many = explore.clutter_explorer(model, images, labels, index=0, n_clutter=20, canvas=60)
    assert few.numbers["label"] == many.numbers["label"] == int(labels[0])
    canvas_few = few.figure.axes[0].images[0].get_array()
    canvas_many = many.figure.axes[0].images[0].get_array()
    assert canvas_many.sum() > canvas_few.sum()  # more ink from the pieces
    with pytest.raises(ValueError, match="n_clutter"):
        explore.clutter_explorer(model, images, labels, index=0, n_clutter=-1)


def test_glimpse_stats_shapes_and_values():
    images, labels = _digits()
    dataset = TranslatedMNIST(images, labels, canvas=60, seed=3)
    stats = explore.glimpse_stats(_model(), dataset, batch_size=5)
    assert set(stats) >= {"label", "prediction", "correct", "boxes", "iou", "glimpse_side"}
    assert stats["boxes"].shape == (12, 4) and stats["iou"].shape == (12,)
    torch.testing.assert_close(stats["label"], torch.as_tensor(labels))
    assert torch.all(stats["digit_side"] == torch.as_tensor(dataset.side - 1).float())
    torch.testing.assert_close(stats["p_max"], torch.full((12,), 1 / (30 * 30)))
    # A uniform PMF puts on each box its share of the map's pixels.
    assert torch.all((stats["mass_in_box"] > 0) & (stats["mass_in_box"] < 1))
    assert len(explore.glimpse_stats(_model(), dataset, batch_size=5, limit=7)["iou"]) == 7
    sharp = _model()
    torch.nn.init.normal_(sharp.attention.conv2.weight, std=0.5)
    cold = explore.glimpse_stats(sharp, dataset, limit=4, temperature=0.25)["p_max"]
    warm = explore.glimpse_stats(sharp, dataset, limit=4)["p_max"]
    assert (cold > warm).all()
    fig = explore.plot_glimpse_sizes({"untrained": stats})
    _assert_labelled(fig)


def test_plot_canvases_grid():
    canvases = torch.rand(5, 1, 40, 40)
    boxes = torch.tensor([[2.0, 3.0, 20.0, 21.0]]).repeat(5, 1)
    fig = explore.plot_canvases(canvases, boxes, torch.arange(5), ncols=3)
    assert len(fig.axes) == 6 and fig.axes[0].get_title() == "label 0, 19 px"
    for ax in fig.axes[:5]:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    with pytest.raises(ValueError, match="share B"):
        explore.plot_canvases(canvases, boxes[:3], torch.arange(5))


def _write_results(path, rows):
    columns = [*CELL_COLUMNS, *RESULT_COLUMNS]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for cell, acc in rows:
            row = {k: "" if v is None else v for k, v in dataclasses.asdict(cell).items()}
            row.update({name: "nan" for name in RESULT_COLUMNS}, test_acc=acc)
            writer.writerow(row)


def test_model_summary_orders_models_and_handles_subsets(tmp_path):
    assert explore.model_summary(tmp_path / "missing.csv") == []
    path = tmp_path / "clean.csv"
    _write_results(
        path,
        [
            (Cell(model="oracle", seed=0), 0.97),
            (Cell(model="dham", width=16, seed=0), 0.96),
            (Cell(model="dham", width=16, seed=1), 0.94),
            (Cell(model="dham", width=8, seed=0), 0.90),
            (Cell(model="cnn", seed=0), 0.80),
            (Cell(model="dham", width=16, snr_db=6.0, seed=0), 0.5),
        ],
    )
    summary = explore.model_summary(path, width=16)
    assert [s["model"] for s in summary] == ["cnn", "dham", "oracle"]
    dham = summary[1]
    assert dham["n"] == 2 and dham["test_acc_mean"] == pytest.approx(0.95)
    assert math.isnan(dham["iou_mean"])
    every_width = explore.model_summary(path)
    assert [(s["model"], s["width"]) for s in every_width][1:3] == [("dham", 8), ("dham", 16)]
    assert [s["n"] for s in explore.model_summary(path, snr_db=6.0)] == [1]


def test_evaluate_canvases_keeps_the_digit_size():
    cell = Cell(model="dham", width=4, test_size=20)
    scores = explore.evaluate_canvases(_model(), cell, sides=(120, 160))
    assert [s["canvas"] for s in scores] == [120, 160]
    assert all(0 <= s["acc"] <= 1 and 0 <= s["iou"] <= 1 for s in scores)
    with pytest.raises(TypeError, match="Cell"):
        explore.evaluate_canvases(_model(), "clean")


@pytest.mark.parametrize("size, stride", [(120, 1), (120, 2), (120, 4), (120, 8), (10, 4)])
def test_stride_offsets_match_dham_and_stay_below_half_the_stride(size, stride):
    offsets = explore.stride_offsets(size, stride)
    assert len(offsets) == -(-size // stride)
    assert offsets.abs().max() < stride / 2
    # What the pooled column summarises: the centre of mass of a one-hot pooled column.
    image_x = torch.arange(size, dtype=torch.float64).expand(1, 1, 1, size)
    centres = F.avg_pool2d(image_x, (1, stride), ceil_mode=True)[0, 0, 0]
    for k in range(len(offsets)):
        hot = torch.full((1, 1, 3, len(offsets)), -60.0, dtype=torch.float64)
        hot[0, 0, 1, k] = 60.0
        _, params = DHAM()(torch.zeros(1, 1, 3, size, dtype=torch.float64), hot)
        read = to_pixels(params.tx, size).item()
        assert read - centres[k].item() == pytest.approx(offsets[k].item(), abs=1e-9)


def test_stride_offsets_bad_input():
    assert explore.stride_offsets(120, 1).abs().max() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        explore.stride_offsets(8, 8)
    with pytest.raises(TypeError, match="stride"):
        explore.stride_offsets(120, 2.0)


def test_box_logits_one_channel_per_box():
    boxes = torch.tensor([[1.0, 2.0, 4.0, 5.0], [10.0, 0.0, 11.0, 1.0]])
    logits = explore.box_logits(boxes, (8, 12))
    assert logits.shape == (1, 2, 8, 12)
    assert logits[0, 0].sum() == 10.0 * 4 * 4 and logits[0, 1].sum() == 10.0 * 2 * 2
    assert logits[0, 0, 2, 1] == 10.0 and logits[0, 0, 1, 1] == 0.0
    with pytest.raises(ValueError, match=r"\[K, 4\]"):
        explore.box_logits(torch.zeros(2, 3), (8, 12))


def test_ink_share_counts_pixel_centres_inside_the_box():
    canvases = torch.zeros(2, 1, 10, 10)
    canvases[0, 0, 2:4, 2:4] = 1.0  # 4 pixels of ink
    canvases[0, 0, 8, 8] = 4.0  # as much again, outside
    boxes = torch.tensor([[1.5, 1.5, 3.0, 3.0], [0.0, 0.0, 9.0, 9.0]])
    share = explore.ink_share(canvases, boxes)
    assert share[0].item() == pytest.approx(0.5) and share[1].item() == 0.0  # blank canvas
    with pytest.raises(ValueError, match="one per canvas"):
        explore.ink_share(canvases, boxes[:1])


def test_mass_in_box_reads_the_map_as_spanning_the_image():
    pmf = torch.full((1, 2, 5, 5), 1 / 25)
    pmf[0, 1] = 0.0
    pmf[0, 1, 4, 4] = 1.0  # all the mass on the last map pixel, image pixel (99, 99)
    boxes = torch.tensor([[50.0, 50.0, 99.0, 99.0]])
    mass = explore.mass_in_box(pmf, boxes, (100, 100))
    # Map pixels 3 and 4 (image pixels 74.25 and 99) of each axis lie in the box: 4 of 25.
    torch.testing.assert_close(mass, torch.tensor([[4 / 25, 1.0]]))
    with pytest.raises(ValueError, match="one per PMF"):
        explore.mass_in_box(pmf, boxes.repeat(2, 1), (100, 100))
