"""dham_lib: the Differentiable Hard Attention Module and the library behind the DHAM course.

Three layers, each importing only the ones before it:

- ``dham_lib`` itself, the idea and what a researcher imports: ``pmf``, ``sampling``,
  ``dham``, ``metrics``, ``data``, ``models``, ``train``, ``checkpoints``, ``settings``;
- ``dham_lib.study``, running the experiments: ``runs``, ``executors``, ``results``,
  ``pretrained``, ``figures`` (of runs and results) and the command line ``cli``;
- ``dham_lib.course``, the classroom: ``widgets``, ``colab``, ``figures``, ``inspect``
  and ``explorers`` (the notebooks' slider functions).
"""

__version__ = "0.1.0"

from dham_lib.data import TranslatedMNIST, load_mnist  # noqa: E402
from dham_lib.dham import DHAM  # noqa: E402
from dham_lib.models import build_model  # noqa: E402
from dham_lib.pmf import expected_norm, expected_position, spatial_softmax  # noqa: E402
from dham_lib.sampling import glimpse  # noqa: E402
from dham_lib.train import evaluate, fit  # noqa: E402

__all__ = [
    "DHAM",
    "TranslatedMNIST",
    "build_model",
    "evaluate",
    "expected_norm",
    "expected_position",
    "fit",
    "glimpse",
    "load_mnist",
    "spatial_softmax",
]
