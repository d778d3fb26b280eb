"""P5 seqio tasks and mixtures: `import p5_tasks` registers every one of them.

Each dataset is one small module declaring its fields (see docs/TASKS.md); importing it
registers exactly the prompts those fields support. Nothing reads data until a task is used.
"""
from p5_jax.tf_setup import quiet_tensorflow

quiet_tensorflow()  # TensorFlow feeds the pipelines only: no GPUs, no start-up noise

from p5_tasks import beauty, ml100k, musical_instruments, toys  # noqa: E402,F401  (registers)
from p5_tasks.registration import (ALL_DATASETS_MIXTURE, OUTPUT_FEATURES, VOCABULARY,  # noqa: E402,F401
                                   DatasetSpec, register_all_datasets_mixture, register_dataset)

register_all_datasets_mixture()
DATASETS = ("musical_instruments", "beauty", "toys", "ml100k")
