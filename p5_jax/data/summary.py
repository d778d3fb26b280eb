"""The table printed at the end of the prepare step, from a manifest."""
from p5_jax import families
from p5_jax.data.splits import MIN_SEQUENCE_LENGTH


def _row(label, value) -> str:
    return f"  {label:<28} {value}"


def _count(value) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _repeats(manifest) -> str:
    repeats = _count(manifest["repeat_interactions"])
    if manifest["dedupe"]:
        return f"{repeats} dropped from sequences (the first interaction with an item stays)"
    return f"{repeats} kept in sequences (a history may hold an item again; --dedupe drops them)"


def _review_split(manifest) -> str:
    scheme = manifest["review_split"]
    if manifest["counts"]["reviews"] == 0:
        return f"{scheme} (no reviews)"
    if manifest["leaks_held_out_items"]:
        return (f"{scheme} (independent 8:1:1)  ** LEAKS HELD-OUT ITEMS: "
                f"{_count(manifest['held_out_pairs_in_review_training'])} of {_count(manifest['held_out_pairs'])} "
                "held-out (user, item) pairs are in review training **")
    return f"{scheme} (held-out items' reviews in validation/test, the rest 8:1:1)"


def format_summary(manifest: dict) -> str:
    counts = manifest["counts"]
    coverage = manifest.get("explanation_coverage")
    lines = [f"Prepared dataset '{manifest['name']}' ({manifest['format']})"]
    lines += [_row(key, _count(counts[key])) for key in ("users", "items", "interactions", "reviews")]
    lines.append(_row("explanations", _count(counts["explanations"]) + (
        f" (coverage {coverage:.1%} of reviews with text)" if coverage is not None else " (no lexicon or text)")))
    leak = "  ** LEAKS TEST ITEMS (source numbering) **" if manifest["leaks_test_items"] else ""
    lines.append(_row("indexing", f"{manifest['indexing']} (seed {manifest['seed']}){leak}"))
    present = [name for name, has in manifest["fields"].items() if has]
    lines.append(_row("fields", ", ".join(present) or "none"))
    lines.append(_row("skipped bad lines", _count(manifest["skipped_bad_lines"])))
    lines.append(_row("users too short", f"{_count(manifest['users_too_short_for_sequences'])} (fewer than "
                      f"{MIN_SEQUENCE_LENGTH} interactions: no sequential/direct records)"))
    lines.append(_row("repeat interactions", _repeats(manifest)))
    lines.append(_row("review split", _review_split(manifest)))
    lines.append(f"  {'split sizes':<28} {'train':>10} {'validation':>11} {'test':>10}")
    for family in families.NAMES:
        sizes = manifest["splits"].get(family)
        if sizes is None:
            lines.append(_row(family, "(no data)"))
        else:
            lines.append(f"  {family:<28} {sizes['train']:>10,} {sizes['validation']:>11,} {sizes['test']:>10,}")
    return "\n".join(lines)
