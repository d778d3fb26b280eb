"""p5-jax: P5, recommendation as language processing, in JAX."""
import os

# TensorFlow (used only for input pipelines) is noisy on import; keep the console clean
# unless the user asked for its logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

__version__ = "0.1.0"
