"""Stable, seeded hashing of ids: an order and random streams that depend on nothing else."""
import hashlib


def stable_hash(*, text: str, seed: int) -> int:
    digest = hashlib.blake2b(f"{seed}\x00{text}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def hash_order(items, *, seed: int) -> list:
    """`items` sorted by their seeded hash (ties, practically impossible, by the id itself)."""
    return sorted(items, key=lambda item: (stable_hash(text=item, seed=seed), item))
