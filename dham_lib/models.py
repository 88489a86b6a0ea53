"""The classifiers the course trains and compares (derived in 04_clean_translated_mnist):
each maps a canvas batch ``[B, C, H, W]`` to a :class:`Prediction`, and ``MODELS`` names them.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dham_lib import _checks
from dham_lib.dham import DHAM, AttentionParams
from dham_lib.sampling import _box_to_params, _sample_glimpses, glimpse_box
from dham_lib.settings import as_json, setting, updated


class Prediction(NamedTuple):
    """What every model returns: ``logits [B, num_classes]`` (before softmax), ``boxes
    [B, K, 4]`` (attention boxes ``x0, y0, x1, y1`` in pixels) and ``glimpses [B, K, C, h, w]``
    (the crops the classifier saw); the last two ``None`` for a model that does not attend.
    ``penalty``: a scalar that training adds to the class loss, only in a variant named for
    it (:class:`EntropyDHAM`); None for every model of the course."""

    logits: torch.Tensor
    boxes: torch.Tensor | None
    glimpses: torch.Tensor | None
    penalty: torch.Tensor | None = None


def _canvas(canvas, in_channels: int) -> torch.Tensor:
    """Check a canvas batch ``[B, C, H, W]``: shapes and dtype only (a forward reads no value)."""
    _checks.tensor("canvas", canvas, ndim=4, finite=False)
    if canvas.shape[1] != in_channels:
        raise ValueError(
            f"canvas must have {in_channels} channel(s) (shape [B, {in_channels}, H, W]), "
            f"got shape {tuple(canvas.shape)}"
        )
    return canvas


class Configured(nn.Module):
    """A model of its frozen ``Config``: ``Model(config, **settings)`` (either optional; the
    settings replace the config's) keeps it as ``settings`` and calls ``build(settings)``;
    ``config`` is it as a JSON-able dict with ``name``: ``build_model(**model.config)``
    rebuilds the model. ``has_attention_net``: ``model.attention`` decides where to look."""

    name: str
    Config: type
    has_attention_net = False

    def __init__(self, config=None, **settings):
        super().__init__()
        config = self.Config() if config is None else config
        if not isinstance(config, self.Config):
            raise TypeError(f"config must be a {self.Config.__name__}, got {type(config).__name__}")
        self.settings = updated(config, **settings)
        _checks.positive_int("num_classes", self.settings.num_classes)
        self.in_channels = _checks.positive_int("in_channels", self.settings.in_channels)
        self.build(self.settings)

    @property
    def config(self) -> dict:
        return {"name": self.name, **as_json(self.settings)}


class AttentionNet(nn.Module):
    """``depth`` "same"-padded 5x5 convolutions (the original's two, unpadded) from the image
    to K attention logit maps: ``[B, C, H, W] -> [B, K, H', W']``. ``stride = r > 1``
    average-pools the image first (r^2 times cheaper, off by <= r / 2 px). ``uniform_start``
    zeroes the last convolution (a uniform first PMF); ``init="ink"`` makes conv1's weights
    >= 0 and biases 0 (no channel silent on the digit); ``slope``: a leaky ReLU's, so a
    channel pushed below zero still learns (data/results/README.md, "lock-on")."""

    def __init__(
        self,
        in_channels=1,
        width=16,
        k=1,
        stride=1,
        uniform_start=True,
        init="torch",
        slope=0.0,
        depth=2,
    ):
        super().__init__()
        for name, value in [("in_channels", in_channels), ("width", width), ("k", k)]:
            _checks.positive_int(name, value)
        self.stride = _checks.positive_int("stride", stride)
        self.slope = _checks.fraction("slope", slope)
        _checks.int_at_least("depth", depth, 2)  # an input and an output convolution
        self.conv1 = nn.Conv2d(in_channels, width, 5, padding=2)
        # Between conv1 and conv2, so that checkpoints of the two-layer network keep their keys.
        self.middle = nn.ModuleList(nn.Conv2d(width, width, 5, padding=2) for _ in range(depth - 2))
        self.conv2 = nn.Conv2d(width, k, 5, padding=2)
        if _checks.option("init", init, ("torch", "ink")) == "ink":
            with torch.no_grad():
                self.conv1.weight.abs_()
                self.conv1.bias.zero_()
        if uniform_start:
            nn.init.zeros_(self.conv2.weight)
            nn.init.zeros_(self.conv2.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, K, H', W']`` attention logits."""
        if self.stride > 1:
            # ceil_mode keeps the last partial window, so the map still reaches the far edge.
            image = F.avg_pool2d(image, self.stride, ceil_mode=True)
        hidden = F.leaky_relu(self.conv1(image), self.slope)
        for conv in self.middle:
            hidden = F.leaky_relu(conv(hidden), self.slope)
        return self.conv2(hidden)


# The glimpse classifiers: (channels of the two 5x5 convolutions, their padding, 2x2
# max-pools before the FC layer, hidden units, dropout before the last layer), and their
# weights on a 28x28 glimpse. "compact" and "lean": two ways to fit a checkpoint in 300 KB.
CLASSIFIERS = {
    "course": ((32, 64), 2, 2, 128, 0.0),  # the course's LeNet, 455k
    "original": ((10, 20), 0, 2, 50, 0.5),  # the original DHAM's (PyTorch's MNIST example), 22k
    "small": ((16, 32), 0, 2, 64, 0.0),  # 47k
    "compact": ((32, 64), 2, 3, 32, 0.0),  # the course's with a third pool, 71k
    "lean": ((24, 32), 2, 2, 32, 0.0),  # 70k
}


class GlimpseClassifier(nn.Module):
    """A LeNet on the K glimpses, stacked along channels: ``[B, K, C, h, w] -> [B, classes]``:
    conv5x5 -> ReLU -> maxpool 2 -> conv5x5 -> ReLU -> maxpool 2 [-> maxpool 2] -> FC ->
    ReLU -> [dropout ->] FC num_classes, sized by ``arch`` (:data:`CLASSIFIERS`)."""

    def __init__(self, in_channels=1, k=1, num_classes=10, glimpse_size=(28, 28), arch="course"):
        super().__init__()
        h, w = _checks.size_pair("glimpse_size", glimpse_size)
        _checks.option("arch", arch, CLASSIFIERS)
        (c1, c2), padding, pools, hidden, dropout = CLASSIFIERS[arch]
        # The FC layer's map: two 5x5 convolutions, each pooled by 2, then the extra pools.
        side = [((n + 2 * padding - 4) // 2 + 2 * padding - 4) // 2 ** (pools - 1) for n in (h, w)]
        if min(side) < 1:
            raise ValueError(f"glimpse_size is too small for the {arch!r} LeNet, got {(h, w)}")
        for name, value in [("k", k), ("in_channels", in_channels), ("num_classes", num_classes)]:
            _checks.positive_int(name, value)
        self.in_shape, self.extra_pools = (k, in_channels, h, w), pools - 2
        self.conv1 = nn.Conv2d(k * in_channels, c1, 5, padding=padding)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=padding)
        self.fc1 = nn.Linear(c2 * side[0] * side[1], hidden)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, glimpses: torch.Tensor) -> torch.Tensor:
        """``[B, K, C, h, w] -> [B, num_classes]`` logits."""
        _checks.tensor("glimpses", glimpses, ndim=5, finite=False)
        if tuple(glimpses.shape[1:]) != self.in_shape:
            raise ValueError(
                f"glimpses must have shape [B, {', '.join(map(str, self.in_shape))}], "
                f"got {tuple(glimpses.shape)}"
            )
        x = glimpses.flatten(1, 2)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2 ** (1 + self.extra_pools))
        return self.fc2(self.dropout(F.relu(self.fc1(x.flatten(1)))))


def _conv_stages(channels: list[int], kernels: list[int], batch_norm=False) -> list[nn.Module]:
    """A "same"-padded conv [-> BatchNorm] -> ReLU -> maxpool 2 per kernel size in ``kernels``."""
    layers = []
    for c_in, c_out, n in zip(channels[:-1], channels[1:], kernels, strict=True):
        norm = [nn.BatchNorm2d(c_out)] if batch_norm else []
        layers += [nn.Conv2d(c_in, c_out, n, padding=n // 2), *norm, nn.ReLU(), nn.MaxPool2d(2)]
    return layers


@dataclasses.dataclass(frozen=True)
class PlainCNNConfig:
    """What every model has: its input channels and classes; all the plain CNN has."""

    in_channels: int = setting(1, "image channels")
    num_classes: int = setting(10, "classes")


@dataclasses.dataclass(frozen=True)
class OracleConfig(PlainCNNConfig):
    """What every model that classifies a glimpse has; all the oracle has."""

    glimpse_size: tuple[int, int] = setting((28, 28), "glimpse height and width in pixels")
    classifier: str = setting("course", "the glimpse LeNet (CLASSIFIERS)", tuple(CLASSIFIERS))


@dataclasses.dataclass(frozen=True)
class DHAMConfig(OracleConfig):
    """DHAM's settings (notebooks 04-06): see :class:`DHAMClassifier` and :class:`AttentionNet`."""

    width: int = setting(16, "attention convolutions' channels")
    k: int = setting(1, "glimpses per canvas")
    norm: int = setting(2, "the scale's norm: L1 or L2", (1, 2))
    temperature: float = setting(1.0, "the spatial softmax's temperature")
    stride: int = setting(2, "the attention map's stride")
    uniform_start: bool = setting(True, "start from a uniform PMF (last attention conv at 0)")
    attention_init: str = setting("torch", "the first attention conv's start", ("torch", "ink"))
    attention_slope: float = setting(0.0, "negative slope of the attention net's leaky ReLU")
    attention_depth: int = setting(2, "the attention network's convolutions")


@dataclasses.dataclass(frozen=True)
class ZoomSTNConfig(OracleConfig):
    """The zoom STN's settings (notebook 07): see :class:`ZoomSTN`."""

    canvas: int = setting(120, "canvas side in pixels")
    start_scale: float = setting(1.0, "the STN's first glimpse, a share of the canvas")


@dataclasses.dataclass(frozen=True)
class STNConfig(ZoomSTNConfig):
    """The affine STN's settings (notebook 07): see :class:`STNClassifier`."""

    transform: str = setting("affine", "the STN's transform", ("affine", "zoom"))
    pool: int = setting(1, "the localisation network's input average-pooling")


@dataclasses.dataclass(frozen=True)
class PooledCNNConfig(PlainCNNConfig):
    """The translation-invariant CNN's settings (notebook 07): see :class:`PooledCNN`."""

    width: int = setting(16, "the pooled CNN's first convolution's channels")
    stages: int = setting(5, "the pooled CNN's conv + pool stages")
    batch_norm: bool = setting(False, "a BatchNorm after each of the pooled CNN's convolutions")


class DHAMClassifier(Configured):
    """AttentionNet -> DHAM -> GlimpseClassifier, trained by the class loss alone; any canvas
    size runs. ``width``: the attention channels (the seed claim: more noise needs more)."""

    name, Config = "dham", DHAMConfig
    has_attention_net = True

    def build(self, c: DHAMConfig) -> None:
        net = (c.width, c.k, c.stride, c.uniform_start, c.attention_init, c.attention_slope)
        self.attention = AttentionNet(c.in_channels, *net, c.attention_depth)
        size = _checks.size_pair("glimpse_size", c.glimpse_size)
        self.dham = DHAM(size, norm=c.norm, temperature=c.temperature)
        self.classifier = GlimpseClassifier(c.in_channels, c.k, c.num_classes, size, c.classifier)

    def attend(self, canvas: torch.Tensor) -> tuple[torch.Tensor, AttentionParams]:
        """The attention PMF ``[B, K, H', W']`` and its ``tx, ty, s`` (each ``[B, K]``), as
        ``forward`` computes them, for figures (``course.figures.plot_pmf``)."""
        return self.dham.attention(self.attention(_canvas(canvas, self.in_channels)))

    def forward(self, canvas: torch.Tensor, true_box=None) -> Prediction:
        """``[B, C, H, W] -> Prediction`` (boxes ``[B, K, 4]``); ``true_box`` is ignored."""
        logits = self.attention(_canvas(canvas, self.in_channels))
        glimpses, params = self.dham(canvas, logits)
        boxes = glimpse_box(params.tx, params.ty, params.s, image_size=tuple(canvas.shape[-2:]))
        return Prediction(self.classifier(glimpses), boxes, glimpses, self.penalty(logits))

    def penalty(self, logits: torch.Tensor) -> torch.Tensor | None:
        """The loss a variant adds to the class loss (:class:`EntropyDHAM`); None for DHAM."""
        return None


@dataclasses.dataclass(frozen=True)
class EntropyDHAMConfig(DHAMConfig):
    """:class:`EntropyDHAM`'s settings: DHAM's and the weight of its added loss."""

    entropy_weight: float = setting(1e-4, "lambda of the added loss -lambda * H(PMF)")


class EntropyDHAM(DHAMClassifier):
    """DHAM whose training adds ``-entropy_weight * H``, ``H`` the mean entropy (nats) of its
    attention PMFs: a bonus for spread that keeps the PMF, and with it the glimpse, from
    collapsing, as in attention sampling (Katharopoulos and Fleuret 2019, whose code's
    default weight is 1e-4). A variant with its own name and row, as it adds a loss: DHAM
    itself learns from the class loss alone (docs/conventions.md). Notebook 08 tries it."""

    name, Config = "dham_entropy", EntropyDHAMConfig

    def penalty(self, logits: torch.Tensor) -> torch.Tensor:
        """The entropy bonus of the attention ``logits [B, K, H', W']``: a scalar."""
        # log_softmax over the flattened map is the PMF's log without log(0) at underflow.
        log_pmf = F.log_softmax(logits.flatten(2) / self.settings.temperature, dim=-1)
        entropy = -(log_pmf.exp() * log_pmf).sum(dim=-1).mean()
        return -self.settings.entropy_weight * entropy


class STNClassifier(Configured):
    """A Spatial Transformer Network baseline: localisation CNN -> affine glimpse -> LeNet.

    The localisation network (three conv stages on the canvas average-pooled by ``pool``)
    pools adaptively to the grid a ``canvas``-sized input gives, so any size runs.
    ``transform``: ``"affine"`` (six parameters) or ``"zoom"`` (``s, tx, ty``, DHAM's
    glimpse). The first glimpse is the centred ``start_scale`` times the canvas (1: the
    identity; the zoom STN localises from 0.5, not 1: results README, "The STN").
    """

    name, Config = "stn", STNConfig
    has_attention_net = True

    def build(self, c: STNConfig) -> None:
        _checks.int_at_least("canvas", c.canvas, 28)
        size = self.glimpse_size = _checks.size_pair("glimpse_size", c.glimpse_size)
        self.transform = _checks.option("transform", c.transform, ("affine", "zoom"))
        self.pool = _checks.positive_int("pool", c.pool)
        grid = max(1, c.canvas // (8 * c.pool))
        s0 = _checks.positive("start_scale", c.start_scale)
        start = [s0, 0.0, 0.0, 0.0, s0, 0.0] if c.transform == "affine" else [s0, 0.0, 0.0]
        last = nn.Linear(32, len(start))
        nn.init.zeros_(last.weight)
        last.bias = nn.Parameter(torch.tensor(start))
        # "attention", as in DHAM: the part that decides where to look (fit's attention_lr).
        self.attention = nn.Sequential(
            *_conv_stages([c.in_channels, 8, 16, 16], [5, 5, 3]),
            nn.AdaptiveAvgPool2d(grid),
            nn.Flatten(),
            nn.Linear(16 * grid**2, 32),
            nn.ReLU(),
            last,
        )
        self.classifier = GlimpseClassifier(c.in_channels, 1, c.num_classes, size, c.classifier)

    def theta(self, canvas: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, 2, 3]`` affine maps from glimpse to canvas (normalised)."""
        if self.pool > 1:
            canvas = F.avg_pool2d(canvas, self.pool, ceil_mode=True)
        out = self.attention(canvas)
        if self.transform == "affine":
            return out.view(-1, 2, 3)
        s, tx, ty = out.unbind(dim=1)
        zero = torch.zeros_like(s)
        return torch.stack([s, zero, tx, zero, s, ty], dim=1).view(-1, 2, 3)

    def forward(self, canvas: torch.Tensor, true_box=None) -> Prediction:
        """``[B, C, H, W] -> Prediction`` (boxes ``[B, 1, 4]``); ``true_box`` is ignored."""
        b, c, height, width = _canvas(canvas, self.in_channels).shape
        theta = self.theta(canvas)
        grid = F.affine_grid(theta, [b, c, *self.glimpse_size], align_corners=True)
        glimpses = F.grid_sample(canvas, grid, padding_mode="border", align_corners=True)[:, None]
        boxes = affine_box(theta, (height, width)).unsqueeze(1)
        return Prediction(self.classifier(glimpses), boxes, glimpses)


class ZoomSTN(STNClassifier):
    """The STN a reviewer would pit against DHAM: restricted to DHAM's own glimpse (a zoom and
    a shift), identity start, border padding, its localisation network on the canvas
    average-pooled by 2 (see :class:`STNClassifier`)."""

    name, Config = "stn_zoom", ZoomSTNConfig

    def build(self, c: ZoomSTNConfig) -> None:
        super().build(STNConfig(**dataclasses.asdict(c), transform="zoom", pool=2))


def affine_box(theta: torch.Tensor, image_size) -> torch.Tensor:
    """The pixel bounding box ``[B, 4]`` of an affine glimpse ``theta [B, 2, 3]``: the hull
    of its corners ``(+-1, +-1)``, mapped to ``theta @ [u, v, 1]`` in normalised coordinates."""
    height, width = _checks.size_pair("image_size", image_size)
    corners = theta.new_tensor([[-1, -1, 1], [1, -1, 1], [-1, 1, 1], [1, 1, 1]])
    xy = (corners @ theta.transpose(1, 2) + 1) / 2 * theta.new_tensor([width - 1, height - 1])
    return torch.cat([xy.amin(dim=1), xy.amax(dim=1)], dim=1)


class _WholeCanvas(Configured):
    """A model of the whole canvas, without a glimpse: ``features`` (``stages`` 2x2 pools,
    so a canvas needs ``2 ** stages`` pixels a side) then ``head``."""

    def forward(self, canvas: torch.Tensor, true_box=None) -> Prediction:
        """``[B, C, H, W] -> Prediction`` with boxes and glimpses ``None``."""
        if min(_canvas(canvas, self.in_channels).shape[-2:]) < 2**self.stages:
            raise ValueError(
                f"canvas must be at least {2**self.stages}x{2**self.stages} for "
                f"{self.stages} stages, got {tuple(canvas.shape)}"
            )
        return Prediction(self.head(self.features(canvas)), None, None)


class PlainCNN(_WholeCanvas):
    """The no-attention baseline: 4 x (conv3x3 + ReLU + maxpool 2), 16/32/64/64 channels,
    then FC 128 -> ReLU -> FC classes on a 7x7 grid of features (adaptively pooled, so any
    canvas runs). A global average pool instead scored 85.9% on clean canvases (oracle 96%):
    the 31-pixel receptive field sees only part of a 48-pixel digit."""

    name, Config = "cnn", PlainCNNConfig

    def build(self, c: PlainCNNConfig) -> None:
        self.stages = 4
        layers = _conv_stages([self.in_channels, 16, 32, 64, 64], [3] * self.stages)
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(7))
        head = [nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, c.num_classes)]
        self.head = nn.Sequential(*head)


class PooledCNN(_WholeCanvas):
    """The translation-invariant baseline: ``stages`` x (conv3x3 [+ BatchNorm] + ReLU + maxpool
    2), channels doubling from ``width`` to ``4 * width``, a global max, one linear layer
    (notebook 07). It scores a digit the same anywhere, on any canvas; five stages see 63
    pixels, more than the largest digit's 48; BatchNorm steadies higher learning rates."""

    name, Config = "pooled_cnn", PooledCNNConfig

    def build(self, c: PooledCNNConfig) -> None:
        _checks.positive_int("width", c.width)
        if not isinstance(c.batch_norm, bool):
            raise TypeError(f"batch_norm must be True or False, got {c.batch_norm!r}")
        stages = self.stages = _checks.positive_int("stages", c.stages)
        widths = [c.width * 2 ** min(i, 2) for i in range(stages)]
        layers = _conv_stages([c.in_channels, *widths], [3] * stages, c.batch_norm)
        self.features = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Linear(widths[-1], c.num_classes)


def forward_flops(model: nn.Module, canvas_size: tuple[int, int], in_channels: int = 1) -> int:
    """Floating-point operations of one forward pass on one canvas ``[1, C, H, W]``, by
    ``torch.utils.flop_counter``: two per multiply-add of the convolutions and linear layers
    (not the softmax, sampler and pooling, a small share); the oracle's on a centred box."""
    from torch.utils.flop_counter import FlopCounterMode

    height, width = _checks.size_pair("canvas_size", canvas_size)
    canvas = torch.zeros(1, in_channels, height, width, device=next(model.parameters()).device)
    box = canvas.new_tensor([[width / 4, height / 4, 3 * width / 4, 3 * height / 4]])
    was_training = model.training
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(canvas, true_box=box)
    model.train(was_training)
    return counter.get_total_flops()


class OracleClassifier(Configured):
    """The upper bound: the LeNet on the glimpse of the true digit box ``[B, 4]``."""

    name, Config = "oracle", OracleConfig

    def build(self, c: OracleConfig) -> None:
        size = self.glimpse_size = _checks.size_pair("glimpse_size", c.glimpse_size)
        self.classifier = GlimpseClassifier(c.in_channels, 1, c.num_classes, size, c.classifier)

    def forward(self, canvas: torch.Tensor, true_box=None) -> Prediction:
        """``[B, C, H, W]`` and ``true_box [B, 4]`` -> Prediction (boxes ``[B, 1, 4]``)."""
        _canvas(canvas, self.in_channels)
        if true_box is None:
            raise ValueError("true_box is required by the oracle: pass the digit boxes [B, 4]")
        _checks.tensor("true_box", true_box, ndim=2, finite=False)
        if true_box.shape != (canvas.shape[0], 4):
            raise ValueError(
                f"true_box must have shape [{canvas.shape[0]}, 4] (one box per canvas), "
                f"got {tuple(true_box.shape)}"
            )
        _checks.same_dtype_device("true_box", true_box, canvas, "canvas")
        size = tuple(canvas.shape[-2:])
        tx, ty, s = _box_to_params(true_box.unsqueeze(1), size)
        glimpses = _sample_glimpses(canvas, tx, ty, s, self.glimpse_size, "border")
        boxes = glimpse_box(tx, ty, s, image_size=size)
        return Prediction(self.classifier(glimpses), boxes, glimpses)


_ALL = (DHAMClassifier, STNClassifier, ZoomSTN, PlainCNN, PooledCNN, OracleClassifier, EntropyDHAM)
MODELS = {model.name: model for model in _ALL}


def list_models() -> list[str]:
    """The names :func:`build_model` knows, in :data:`MODELS`' order."""
    return list(MODELS)


def build_model(name: str, **settings) -> nn.Module:
    """The model ``name`` (one of :func:`list_models`), its ``Config``'s defaults changed by
    ``settings`` (a list becomes a tuple, as JSON reads one back)."""
    model = MODELS[_checks.option("name", name, MODELS)]
    return model(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})
