"""The classifiers (notebook 04): shapes, starting points, the oracle's crop, gradients."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from dham_lib.checkpoints import save_checkpoint
from dham_lib.models import (
    AttentionNet,
    DHAMClassifier,
    GlimpseClassifier,
    OracleClassifier,
    Prediction,
    STNClassifier,
    build_model,
)

NAMES = ("dham", "stn", "stn_zoom", "cnn", "pooled_cnn", "oracle", "dham_entropy")


def _centre_box(batch: int, height: int, width: int, side: int = 28) -> torch.Tensor:
    """A ``[B, 4]`` square box of ``side`` pixels in the middle of the canvas."""
    x0, y0 = (width - side) // 2, (height - side) // 2
    return torch.tensor([[x0, y0, x0 + side - 1, y0 + side - 1]], dtype=torch.float32).repeat(
        batch, 1
    )


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("height", "width"), [(120, 120), (160, 200)])
def test_output_shapes(name, height, width):
    torch.manual_seed(0)
    canvas = torch.rand(2, 1, height, width)
    out = build_model(name)(canvas, true_box=_centre_box(2, height, width))
    assert isinstance(out, Prediction)
    assert out.logits.shape == (2, 10)
    if name in ("cnn", "pooled_cnn"):
        assert out.boxes is None and out.glimpses is None
    else:
        assert out.boxes.shape == (2, 1, 4)
        assert out.glimpses.shape == (2, 1, 1, 28, 28)
    assert torch.isfinite(out.logits).all()


def test_two_glimpses_give_two_boxes():
    out = DHAMClassifier(width=4, k=2, uniform_start=False)(torch.rand(3, 1, 120, 120))
    assert out.boxes.shape == (3, 2, 4)
    assert out.glimpses.shape == (3, 2, 1, 28, 28)


def _mean_distance_from_centre(height: int, width: int) -> float:
    """E||(x, y)||_2 under the uniform PMF, by hand: an average over the pixel centres."""
    xs = [-1 + 2 * i / (width - 1) for i in range(width)]
    ys = [-1 + 2 * j / (height - 1) for j in range(height)]
    return sum(math.hypot(x, y) for x in xs for y in ys) / (width * height)


def test_uniform_pmf_scale_matches_the_continuous_square():
    # Over the continuous square [-1, 1]^2 the mean distance from the centre is
    # (sqrt(2) + asinh(1)) / 3 = 0.7652; the 120 x 120 grid of centres is close to it.
    continuous = (math.sqrt(2) + math.asinh(1)) / 3
    assert continuous == pytest.approx(0.765196, abs=1e-6)
    assert _mean_distance_from_centre(120, 120) == pytest.approx(continuous, abs=0.01)


@pytest.mark.parametrize(("height", "width"), [(120, 120), (40, 60)])
def test_uniform_start_spans_the_canvas(height, width):
    model = DHAMClassifier(width=4, stride=1)  # a map of the canvas's own pixels
    pmf, params = model.attend(torch.rand(2, 1, height, width))
    torch.testing.assert_close(pmf, torch.full_like(pmf, 1 / (height * width)))
    torch.testing.assert_close(params.tx, torch.zeros(2, 1), atol=1e-6, rtol=0)
    torch.testing.assert_close(params.ty, torch.zeros(2, 1), atol=1e-6, rtol=0)
    s = _mean_distance_from_centre(height, width)
    torch.testing.assert_close(params.s, torch.full((2, 1), s))
    # The box is the whole canvas [0, 0, W-1, H-1] shrunk about its centre by s < 1:
    # an L2 mean distance is shorter than the half-side it would need to reach the edge.
    cx, cy = (width - 1) / 2, (height - 1) / 2
    expected = torch.tensor([cx - s * cx, cy - s * cy, cx + s * cx, cy + s * cy])
    out = model(torch.rand(2, 1, height, width))
    torch.testing.assert_close(out.boxes, expected.expand(2, 1, 4))


def test_random_start_is_not_uniform():
    torch.manual_seed(0)
    pmf, _ = DHAMClassifier(width=4, uniform_start=False).attend(torch.rand(1, 1, 60, 60))
    assert pmf.std() > 0


def test_stride_halves_the_map_and_still_runs():
    net = AttentionNet(width=4, stride=2)
    assert net(torch.rand(2, 1, 120, 120)).shape == (2, 1, 60, 60)
    assert net(torch.rand(2, 1, 121, 75)).shape == (2, 1, 61, 38)  # ceil: the edge stays
    out = DHAMClassifier(width=4, stride=2, uniform_start=False)(torch.rand(2, 1, 121, 75))
    assert out.logits.shape == (2, 10) and out.boxes.shape == (2, 1, 4)


def test_stride_offset_is_at_most_half_the_stride():
    # Make the map the pooled image itself (centre taps only) and sharpen the PMF,
    # so DHAM points at the pooled pixel holding a single bright image pixel.
    net = AttentionNet(width=1, stride=2, uniform_start=False)
    with torch.no_grad():
        for conv in (net.conv1, net.conv2):
            conv.weight.zero_()
            conv.bias.zero_()
            conv.weight[0, 0, 2, 2] = 100.0
    model = DHAMClassifier(width=1, stride=2)
    model.attention = net
    columns = torch.tensor([0, 1, 2, 59, 60, 61, 117, 118, 119])
    canvas = torch.zeros(len(columns), 1, 120, 120)
    canvas[torch.arange(len(columns)), 0, 40, columns] = 1.0
    boxes = model(canvas).boxes[:, 0]
    found = (boxes[:, 0] + boxes[:, 2]) / 2
    assert (found - columns).abs().max() <= 1.0  # stride / 2


@pytest.mark.parametrize(("height", "width"), [(120, 120), (160, 200)])
def test_stn_starts_at_the_identity(height, width):
    torch.manual_seed(0)
    canvas = torch.rand(2, 1, height, width)
    out = STNClassifier()(canvas)
    whole = F.interpolate(canvas, size=(28, 28), mode="bilinear", align_corners=True)
    torch.testing.assert_close(out.glimpses[:, 0], whole, atol=1e-4, rtol=1e-4)
    expected = torch.tensor([0.0, 0.0, width - 1, height - 1]).expand(2, 1, 4)
    torch.testing.assert_close(out.boxes, expected)


@pytest.mark.parametrize("name", ["stn", "stn_zoom"])
def test_an_stn_can_start_from_a_centred_smaller_glimpse(name):
    torch.manual_seed(0)
    canvas = torch.rand(2, 1, 120, 120)
    out = build_model(name, start_scale=0.5)(canvas)
    # Half the canvas about its centre: normalised -0.5..0.5 is pixels 29.75..89.25.
    expected = torch.tensor([29.75, 29.75, 89.25, 89.25]).expand(2, 1, 4)
    torch.testing.assert_close(out.boxes, expected)
    box = [29.75, 29.75, 89.25, 89.25]
    by_hand = torch.stack([_reference_glimpse(canvas[i : i + 1], box) for i in range(2)])
    torch.testing.assert_close(out.glimpses[:, 0], by_hand, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="start_scale"):
        build_model(name, start_scale=0.0)


def _reference_glimpse(canvas: torch.Tensor, box: list[float], size: int = 28) -> torch.Tensor:
    """Sample ``size x size`` points from corner to corner of a square pixel box, by hand."""
    height, width = canvas.shape[-2:]
    x0, y0, x1, y1 = box
    xs = torch.linspace(x0, x1, size) / (width - 1) * 2 - 1
    ys = torch.linspace(y0, y1, size) / (height - 1) * 2 - 1
    grid = torch.stack([xs.expand(size, size), ys[:, None].expand(size, size)], dim=-1)
    return F.grid_sample(canvas, grid[None], align_corners=True)[0]


def test_oracle_glimpse_is_the_tile():
    torch.manual_seed(0)
    tile = torch.rand(28, 28)
    canvas = torch.zeros(1, 1, 120, 120)
    canvas[0, 0, 30:58, 70:98] = tile
    box = [70.0, 30.0, 97.0, 57.0]  # pixel centres of the tile's corner pixels
    out = OracleClassifier()(canvas, true_box=torch.tensor([box]))
    torch.testing.assert_close(out.glimpses[0, 0, 0], tile)
    torch.testing.assert_close(out.boxes[0, 0], torch.tensor(box))


def test_oracle_box_covers_the_true_box_on_a_wide_canvas():
    # A glimpse is square in normalised units, so on a 120 x 160 canvas a square
    # pixel box gets the larger (vertical) half-side and a wider pixel box.
    box = torch.tensor([[70.0, 30.0, 97.0, 57.0]])
    out = OracleClassifier()(torch.rand(1, 1, 120, 160), true_box=box)
    glimpse_box = out.boxes[0, 0]
    torch.testing.assert_close(glimpse_box[[1, 3]], box[0, [1, 3]])
    assert glimpse_box[0] < box[0, 0] and glimpse_box[2] > box[0, 2]
    torch.testing.assert_close((glimpse_box[0] + glimpse_box[2]) / 2, (box[0, 0] + box[0, 2]) / 2)


def test_oracle_glimpse_of_a_larger_box_matches_grid_sample():
    torch.manual_seed(0)
    tile = F.interpolate(torch.rand(1, 1, 28, 28), size=(45, 45), mode="bilinear")
    canvas = torch.zeros(2, 1, 120, 120)
    canvas[:, :, 11:56, 60:105] = tile
    boxes = [[60.0, 11.0, 104.0, 55.0], [50.0, 5.0, 110.0, 65.0]]
    out = OracleClassifier()(canvas, true_box=torch.tensor(boxes))
    for i, box in enumerate(boxes):
        torch.testing.assert_close(out.glimpses[i, 0], _reference_glimpse(canvas[i : i + 1], box))


def test_oracle_needs_the_true_box():
    with pytest.raises(ValueError, match="true_box"):
        OracleClassifier()(torch.rand(1, 1, 120, 120))
    with pytest.raises(ValueError, match="true_box"):
        OracleClassifier()(torch.rand(2, 1, 120, 120), true_box=torch.zeros(3, 4))


def _attention_grads(model: DHAMClassifier) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model.zero_grad()
    out = model(torch.rand(4, 1, 60, 60))
    F.cross_entropy(out.logits, torch.tensor([0, 1, 2, 3])).backward()
    return model.attention.conv1.weight.grad, model.attention.conv2.weight.grad


def test_class_loss_reaches_the_first_attention_conv():
    torch.manual_seed(0)
    first, last = _attention_grads(DHAMClassifier(width=4, uniform_start=False))
    assert first.abs().sum() > 0 and last.abs().sum() > 0


def test_uniform_start_moves_the_last_conv_first():
    # With the last conv at zero, the first conv's gradient passes through zero
    # weights: it is exactly zero until one step has moved the last conv.
    model = DHAMClassifier(width=4)
    first, last = _attention_grads(model)
    assert last.abs().sum() > 0 and first.abs().sum() == 0
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    first, _ = _attention_grads(model)
    assert first.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_config_rebuilds_the_model(name):
    model = build_model(name)
    config = json.loads(json.dumps(model.config))
    assert config["name"] == name
    assert build_model(**config).config == model.config


def test_build_model_rejects_an_unknown_name():
    with pytest.raises(
        ValueError,
        match=r"name .*'dham', 'stn', 'stn_zoom', 'cnn', 'pooled_cnn', 'oracle', 'dham_entropy'",
    ):
        build_model("resnet")


@pytest.mark.parametrize("width", [0, -1, 2.5, True])
def test_build_model_rejects_a_bad_width(width):
    with pytest.raises((TypeError, ValueError), match=rf"width .*{width}"):
        build_model("dham", width=width)


def test_models_reject_a_3d_canvas_and_wrong_channels():
    with pytest.raises(ValueError, match="canvas"):
        build_model("cnn")(torch.rand(1, 120, 120))
    with pytest.raises(ValueError, match="canvas"):
        build_model("dham")(torch.rand(1, 3, 120, 120))


def test_the_original_lenet_is_the_pytorch_mnist_example_and_fits_a_small_checkpoint(tmp_path):
    original = GlimpseClassifier(arch="original")
    # conv 1->10 (5x5), conv 10->20 (5x5), FC 320->50, FC 50->10: weights and biases.
    assert sum(p.numel() for p in original.parameters()) == 260 + 5020 + 16050 + 510
    assert original.fc1.in_features == 320
    glimpses = torch.rand(4, 1, 1, 28, 28)
    original.eval()
    torch.testing.assert_close(original(glimpses), original(glimpses))  # no dropout in eval
    original.train()
    assert not torch.equal(original(glimpses), original(glimpses))  # dropout 0.5 in training
    model = build_model("dham", width=16, classifier="original")
    save_checkpoint(tmp_path / "small.pt", model, data_config={}, metrics={}, extra={})
    assert (tmp_path / "small.pt").stat().st_size <= 300 * 1024
    with pytest.raises(ValueError, match="arch"):
        GlimpseClassifier(arch="vgg")


@pytest.mark.parametrize("width", [2, 16, 32, 48])
def test_the_compact_lenet_keeps_the_course_convolutions_and_both_fit_300_kb(tmp_path, width):
    compact, course = GlimpseClassifier(arch="compact"), GlimpseClassifier(arch="course")
    assert compact.conv2.weight.shape == course.conv2.weight.shape  # 32 -> 64, 5x5
    # conv 1->32, conv 32->64 (both 5x5), FC 64*3*3=576 -> 32, FC 32 -> 10.
    assert sum(p.numel() for p in compact.parameters()) == 832 + 51264 + 18464 + 330
    assert compact.fc1.in_features == 576
    glimpses = torch.rand(3, 1, 1, 28, 28)
    pooled = F.max_pool2d(F.relu(compact.conv1(glimpses[:, 0])), 2)  # 28 -> 14
    pooled = F.max_pool2d(F.max_pool2d(F.relu(compact.conv2(pooled)), 2), 2)  # 14 -> 7 -> 3
    expected = compact.fc2(F.relu(compact.fc1(pooled.flatten(1))))
    torch.testing.assert_close(compact(glimpses), expected)
    for arch in ("compact", "lean"):
        model = build_model("dham", width=width, classifier=arch)
        save_checkpoint(tmp_path / f"{arch}.pt", model, data_config={}, metrics={}, extra={})
        assert (tmp_path / f"{arch}.pt").stat().st_size <= 300 * 1024


def test_the_lean_lenet_keeps_the_7x7_map_with_fewer_channels():
    lean = GlimpseClassifier(arch="lean")
    # conv 1->24, conv 24->32 (both 5x5, padded), FC 32*7*7=1568 -> 32, FC 32 -> 10.
    assert sum(p.numel() for p in lean.parameters()) == 624 + 19232 + 50208 + 330
    assert lean(torch.rand(2, 1, 1, 28, 28)).shape == (2, 10)


def test_the_pooled_cnn_scores_a_digit_the_same_wherever_it_is_and_takes_any_canvas():
    torch.manual_seed(0)
    model = build_model("pooled_cnn", width=4).eval()
    canvas = torch.zeros(2, 1, 256, 256)
    canvas[0, 0, 64:94, 64:88] = torch.rand(30, 24)
    # The same patch moved by multiples of the 32-pixel total pooling stride, both far
    # enough from the edges that the 63-pixel receptive field sees no padding.
    canvas[1, 0, 128:158, 160:184] = canvas[0, 0, 64:94, 64:88]
    logits = model(canvas).logits
    torch.testing.assert_close(logits[0], logits[1])
    assert model(torch.rand(3, 1, 200, 72)).logits.shape == (3, 10)
    with pytest.raises(ValueError, match="at least 32x32"):
        model(torch.rand(1, 1, 20, 40))


def test_the_pooled_cnn_takes_a_batch_norm_after_each_convolution():
    plain, normed = (
        build_model("pooled_cnn", width=4),
        build_model("pooled_cnn", width=4, batch_norm=True),
    )
    norms = [m for m in normed.features if isinstance(m, torch.nn.BatchNorm2d)]
    convolutions = [m for m in normed.features if isinstance(m, torch.nn.Conv2d)]
    assert [n.num_features for n in norms] == [c.out_channels for c in convolutions]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.features)
    # Each BatchNorm follows its convolution, before the ReLU.
    layers = list(normed.features)
    assert all(isinstance(layers[layers.index(n) - 1], torch.nn.Conv2d) for n in norms)
    assert normed.eval()(torch.rand(2, 1, 64, 64)).logits.shape == (2, 10)
    with pytest.raises(TypeError, match="batch_norm"):
        build_model("pooled_cnn", batch_norm=1)


def test_forward_flops_count_two_per_multiply_add():
    from dham_lib.models import forward_flops

    model = build_model("pooled_cnn", width=1, stages=1)  # one 3x3 conv 1->1, one linear 1->10
    assert forward_flops(model, (8, 6)) == 2 * (8 * 6 * 9) + 2 * 10
    dham, oracle = build_model("dham", width=16), build_model("oracle")
    # DHAM = its attention network, whose cost grows with the canvas's area, plus the same
    # LeNet on a 28x28 glimpse that the oracle is: 4 times the area, 4 times the attention.
    glimpse = forward_flops(oracle, (120, 120))
    assert forward_flops(oracle, (480, 480)) == glimpse
    small, large = forward_flops(dham, (120, 120)), forward_flops(dham, (240, 240))
    assert large - glimpse == 4 * (small - glimpse)
    assert small - glimpse == 2 * (60 * 60 * 16 * 25) * 2  # two 5x5 convolutions, 1->16->1


def test_the_zoom_stn_takes_dhams_own_glimpse():
    from dham_lib.models import ZoomSTN
    from dham_lib.sampling import glimpse

    torch.manual_seed(0)
    model = ZoomSTN()
    canvas = torch.rand(2, 1, 120, 120)
    start = model(canvas)
    torch.testing.assert_close(start.boxes[:, 0], torch.tensor([[0.0, 0.0, 119.0, 119.0]] * 2))
    with torch.no_grad():  # a zoom and a shift, as DHAM's glimpse (tx + s u, ty + s v)
        model.attention[-1].bias.copy_(torch.tensor([0.3, -0.2, 0.4]))
    theta = model.theta(canvas)
    torch.testing.assert_close(theta[0], torch.tensor([[0.3, 0.0, -0.2], [0.0, 0.3, 0.4]]))
    params = [torch.full((2, 1), v) for v in (-0.2, 0.4, 0.3)]
    torch.testing.assert_close(model(canvas).glimpses, glimpse(canvas, *params), atol=1e-5, rtol=0)


def test_an_ink_start_makes_every_first_attention_channel_respond_to_ink():
    torch.manual_seed(1)
    plain = AttentionNet(width=8, init="torch")
    torch.manual_seed(1)
    ink = AttentionNet(width=8, init="ink")
    torch.testing.assert_close(ink.conv1.weight, plain.conv1.weight.abs())
    assert (ink.conv1.bias == 0).all() and (plain.conv1.bias != 0).any()
    stroke = torch.zeros(1, 1, 20, 20)
    stroke[..., 8:12, 4:16] = 1.0
    response = F.relu(ink.conv1(stroke))[0].amax(dim=(1, 2))
    assert (response > 0).all()  # no channel is silent on the stroke
    with pytest.raises(ValueError, match="init"):
        AttentionNet(init="xavier")


@pytest.mark.parametrize("slope", [0.0, 0.1])
def test_the_attention_activation_is_a_relu_with_the_given_negative_slope(slope):
    torch.manual_seed(0)
    net = AttentionNet(width=4, uniform_start=False, slope=slope)
    image = torch.randn(2, 1, 12, 12)
    hidden = net.conv1(image)
    expected = net.conv2(torch.where(hidden > 0, hidden, slope * hidden))
    torch.testing.assert_close(net(image), expected)


def test_a_leaky_attention_channel_pushed_below_zero_everywhere_still_learns():
    image = torch.rand(2, 1, 12, 12)
    grads = {}
    for slope in (0.0, 0.1):
        torch.manual_seed(0)
        net = AttentionNet(width=2, uniform_start=False, slope=slope)
        with torch.no_grad():
            net.conv1.bias.fill_(-50.0)  # below zero on every pixel of any image in [0, 1]
        net(image).sum().backward()
        grads[slope] = net.conv1.weight.grad.abs().sum().item()
    assert grads[0.0] == 0.0 and grads[0.1] > 0.0
    with pytest.raises(ValueError, match="slope"):
        AttentionNet(slope=1.5)


def test_a_third_attention_convolution_sits_between_the_original_two():
    torch.manual_seed(0)
    net = AttentionNet(width=4, uniform_start=False, depth=3)
    image = torch.randn(2, 1, 12, 12)
    relu = torch.nn.functional.relu
    # Written out with conv2d on the layers' own weights, one convolution at a time.
    hidden = relu(torch.nn.functional.conv2d(image, net.conv1.weight, net.conv1.bias, padding=2))
    middle = net.middle[0]
    hidden = relu(torch.nn.functional.conv2d(hidden, middle.weight, middle.bias, padding=2))
    expected = torch.nn.functional.conv2d(hidden, net.conv2.weight, net.conv2.bias, padding=2)
    torch.testing.assert_close(net(image), expected)
    assert tuple(middle.weight.shape) == (4, 4, 5, 5)


def test_the_two_layer_attention_network_keeps_its_checkpoint_keys():
    keys = set(AttentionNet(width=4).state_dict())
    assert keys == {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"}
    deeper = set(AttentionNet(width=4, depth=4).state_dict())
    assert deeper - keys == {f"middle.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")}
    with pytest.raises(ValueError, match="depth"):
        AttentionNet(depth=1)


def test_the_stn_needs_a_canvas_of_28_px_and_the_cnn_one_of_16():
    with pytest.raises(ValueError, match="canvas must be an int >= 28, got 20"):
        build_model("stn", canvas=20)
    with pytest.raises(ValueError, match="at least 16x16 for 4 stages"):
        build_model("cnn")(torch.rand(1, 1, 12, 40))


def test_entropy_variant_penalty_is_minus_weight_times_the_pmfs_mean_entropy():
    torch.manual_seed(0)
    model = build_model("dham_entropy", width=4, entropy_weight=0.5, uniform_start=False)
    canvas = torch.rand(3, 1, 40, 40)
    pmf, _ = model.attend(canvas)
    # Reference: torch.distributions' entropy of each flattened PMF, in nats.
    entropy = torch.distributions.Categorical(probs=pmf.flatten(2)).entropy().mean()
    prediction = model(canvas)
    assert prediction.penalty.shape == ()
    torch.testing.assert_close(prediction.penalty, -0.5 * entropy)
    same_weights = build_model("dham", width=4, uniform_start=False)
    same_weights.load_state_dict(model.state_dict())
    torch.testing.assert_close(same_weights(canvas).logits, prediction.logits)
    assert same_weights(canvas).penalty is None


def test_entropy_variant_starts_at_the_uniform_pmfs_entropy_and_pushes_towards_spread():
    model = build_model("dham_entropy", width=4, entropy_weight=1.0, uniform_start=True)
    canvas = torch.rand(2, 1, 40, 40)
    cells = model.attend(canvas)[0][0, 0].numel()  # 20 x 20 at stride 2
    torch.testing.assert_close(model(canvas).penalty, -torch.log(torch.tensor(float(cells))))
    # The uniform PMF has the largest entropy: the bonus's gradient there is zero.
    model.zero_grad()
    model(canvas).penalty.backward()
    last = model.attention.conv2.weight.grad
    assert last.abs().max() < 1e-6
