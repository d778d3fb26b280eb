"""MovieLens 100K: ratings, timestamps, movie titles, demographics; no review text, brand or price.

Zero-shot: the title-only prompts Z-8 and Z-9 register; P5's Z-1..Z-6 need a brand and a price
and Z-7 an explanation, which MovieLens does not have.
"""
from p5_tasks.registration import DatasetSpec, register_dataset

SPEC = DatasetSpec(name="ml100k", fields=frozenset({"rating", "item_title", "sequences"}))
TASKS = register_dataset(SPEC)
