"""Amazon Musical Instruments (5-core reviews with text; no item metadata, so no title prompts)."""
from p5_tasks.registration import DatasetSpec, register_dataset

SPEC = DatasetSpec(name="musical_instruments",
                   fields=frozenset({"rating", "review_text", "summary", "explanation",
                                     "sequences"}))
TASKS = register_dataset(SPEC)
