"""Amazon Toys and Games as P5 processed it: interaction sequences only."""
from p5_tasks.registration import DatasetSpec, register_dataset

SPEC = DatasetSpec(name="toys", fields=frozenset({"sequences"}))
TASKS = register_dataset(SPEC)
