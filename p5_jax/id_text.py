"""How user and item ids are written in prompts and targets: `user_17`, `item_42`.

The one place that fixes the prefixes; rendering, decoding, parsing and the vocabulary corpus
all build on it.
"""
USER_PREFIX = "user_"
ITEM_PREFIX = "item_"


def user_text(user_id: str) -> str:
    return f"{USER_PREFIX}{user_id}"


def item_text(item_id: str) -> str:
    return f"{ITEM_PREFIX}{item_id}"
