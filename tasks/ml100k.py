"""MovieLens 100K: ratings, timestamps, movie titles, demographics; no review text."""
from p5_tasks.registration import DatasetSpec, register_dataset

SPEC = DatasetSpec(name="ml100k", fields=frozenset({"rating", "item_title", "sequences"}))
TASKS = register_dataset(SPEC)
