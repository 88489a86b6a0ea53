"""MNIST for the course: loading it (:mod:`dham_lib.data.mnist`: the bundled subset, the full
set) and drawing digits on large canvases (:mod:`dham_lib.data.canvas`: ``TranslatedMNIST``,
the literature's ``cluttered_mnist``). Every public name is importable from here."""

from dham_lib.data.canvas import (
    BACKGROUNDS,
    LITERATURE_DISTRACTORS,
    TranslatedMNIST,
    cluttered_mnist,
    noise_sigma,
    snr_db_of,
)
from dham_lib.data.mnist import (
    BUNDLED_FILE,
    BUNDLED_SHA256,
    EXTRACTED_MD5,
    SOURCES,
    SPLITS,
    balanced_order,
    cache_dir_default,
    data_dir,
    full_mnist_present,
    load_mnist,
)

__all__ = [
    "BACKGROUNDS",
    "BUNDLED_FILE",
    "BUNDLED_SHA256",
    "EXTRACTED_MD5",
    "LITERATURE_DISTRACTORS",
    "SOURCES",
    "SPLITS",
    "TranslatedMNIST",
    "balanced_order",
    "cache_dir_default",
    "cluttered_mnist",
    "data_dir",
    "full_mnist_present",
    "load_mnist",
    "noise_sigma",
    "snr_db_of",
]
