"""The classroom: sliders and answer checks, Colab, figures, looking inside trained models."""
