"""dham_lib: the Differentiable Hard Attention Module and the helpers of the DHAM course."""

__version__ = "0.1.0"
