"""Amazon Beauty as P5 processed it: interaction sequences only (sequential and direct)."""
from p5_tasks.registration import DatasetSpec, register_dataset

SPEC = DatasetSpec(name="beauty", fields=frozenset({"sequences"}))
TASKS = register_dataset(SPEC)
