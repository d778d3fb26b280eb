"""seqio preprocessors that turn prepared records into prompt fields, one job each.

Randomness: `add_sample_seed` (a seeded map, `input_pipeline.seeded_map`) gives every record a
`sample_seed`; the later steps draw from it with stateless ops, each under its own salt. Training
records take the per-draw seed of the training stream (new draws each epoch, reproducible for a
pipeline seed; seqio's when read through seqio.get_dataset); validation and test
records take a seed hashed from the record itself, so evaluation sets never depend on the pipeline
seed. Ids stay raw here (`"42"`); rendering adds `item_` / `user_`.
"""
from __future__ import annotations

import seqio
import tensorflow as tf

from p5_jax import input_pipeline
from p5_tasks import catalog

MAX_HISTORY = 20
NUM_CANDIDATES = 100
JOINERS = (",", "->")           # rendered " , " and " -> "
_SALT_PREFIX, _SALT_PROBE, _SALT_NEG, _SALT_STAR, _SALT_JOIN, _SALT_SHUFFLE = range(1, 7)
_SALT_START = 7
# Training targets of sequential prompts: P5's (last three positions) or any cut point.
SEQUENTIAL_SAMPLINGS = ("p5", "all_prefixes")


def _seed(ex, salt: int) -> tf.Tensor:
    return tf.random.experimental.stateless_fold_in(ex["sample_seed"], salt)


def _uniform_int(ex, salt: int, maxval) -> tf.Tensor:
    """One int in [0, maxval) (maxval >= 1), from the record's seed."""
    return tf.random.stateless_uniform([], _seed(ex, salt), minval=0, maxval=maxval,
                                       dtype=tf.int32)


def _coin(ex, salt: int) -> tf.Tensor:
    return tf.random.stateless_uniform([], _seed(ex, salt)) < 0.5


@input_pipeline.seeded_map
def add_sample_seed(ex, seed):
    """{user_id, item_id|target, is_train, ...} -> {..., sample_seed: int64[2]}."""
    key_field = "item_id" if "item_id" in ex else "target"
    key = tf.strings.join([ex["user_id"], ex[key_field]], separator="|")
    eval_seed = tf.stack([tf.strings.to_hash_bucket_fast(key, 2**31 - 1), tf.constant(7, tf.int64)])
    train_seed = tf.cast(tf.stack(seed), tf.int64)
    ex = dict(ex)
    ex["sample_seed"] = tf.where(ex["is_train"], train_seed, eval_seed)
    return ex


def filter_usable_sequences(dataset, *, min_train_history: int):
    """Drops training users whose history is shorter than `min_train_history` (2 for a prefix
    plus its next item, 1 for a direct positive); evaluation users always stay."""
    return dataset.filter(
        lambda ex: tf.logical_or(tf.logical_not(ex["is_train"]),
                                 tf.size(ex["history"]) >= min_train_history))


def _p5_window(ex, n):
    """(start, end) as P5's code draws them (src/pretrain_data.py): the target `history[end]` at
    one of the last three positions but never before the third item, then the history start at
    one of the first three items, leaving at least two. With 3 items: [a, b] -> c; with 2 (P5
    has none): [a] -> b."""
    first_end = tf.maximum(tf.minimum(2, n - 1), n - 3)
    end = first_end + _uniform_int(ex, _SALT_PREFIX, n - first_end)
    return _uniform_int(ex, _SALT_START, 1 + tf.clip_by_value(end - 2, 0, 2)), end


def _all_prefixes_window(ex, n):
    """(0, end): any cut point; the target `history[end]` is any item after the first."""
    return tf.constant(0), 1 + _uniform_int(ex, _SALT_PREFIX, tf.maximum(n - 1, 1))


_WINDOWS = {"p5": _p5_window, "all_prefixes": _all_prefixes_window}


def check_sequential_sampling(sampling: str) -> str:
    """`sampling` if it names a sequential sampling, else a ValueError."""
    if sampling not in SEQUENTIAL_SAMPLINGS:
        raise ValueError(f"sequential_sampling must be one of {SEQUENTIAL_SAMPLINGS}, "
                         f"got {sampling!r}")
    return sampling


def next_item_from_prefix(dataset, *, sampling: str = "p5", max_history: int = MAX_HISTORY,
                          continuation: int = 0):
    """Training: {history: [a, .., j]} -> {history: [b, .., g], target: h}, the window drawn as
    `sampling` says ("p5": `_p5_window`, "all_prefixes": `_all_prefixes_window`); evaluation
    keeps the stored history and target. Histories keep their last `max_history` items.
    `continuation` k > 0 adds {continuation: [h, i, j]}: the target and the items after it, k
    at most (evaluation: [target])."""
    window = _WINDOWS[check_sequential_sampling(sampling)]

    def cut(ex):
        history, n, is_train = ex["history"], tf.size(ex["history"]), ex["is_train"]
        start, end = tf.cond(is_train, lambda: window(ex, n), lambda: (tf.constant(0), n))
        target = tf.cond(is_train, lambda: tf.gather(history, end), lambda: ex["target"])
        kept = history[tf.maximum(start, end - max_history):end]
        ex = {**ex, "target": target, "history": kept}
        if continuation > 0:
            ex["continuation"] = tf.cond(is_train, lambda: history[end:end + continuation],
                                         lambda: target[None])
        return ex

    return dataset.map(cut, num_parallel_calls=tf.data.AUTOTUNE)


@seqio.map_over_dataset
def positive_from_history(ex):
    """Training: {history: [a, b, c]} -> {target: one of a, b, c}; evaluation keeps its target."""
    history = ex["history"]
    picked = tf.gather(history, _uniform_int(ex, _SALT_PREFIX, tf.maximum(tf.size(history), 1)))
    ex = dict(ex)
    ex["target"] = tf.where(ex["is_train"], picked, ex["target"])
    return ex


def _lookup_table(ids) -> tf.lookup.StaticHashTable:
    keys = tf.constant(list(ids), dtype=tf.string)
    values = tf.range(tf.size(keys), dtype=tf.int64)
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), -1)


def _unseen_sampler(dataset_name: str):
    """f(ex, count, salt) -> up to `count` distinct items the user never interacted with,
    drawn uniformly (random scores; interacted items pushed past every other item)."""
    items = tf.constant(list(catalog.item_ids(dataset_name)), dtype=tf.string)
    table = _lookup_table(catalog.item_ids(dataset_name))

    def sample(ex, count: int, salt: int):
        scores = tf.random.stateless_uniform(tf.shape(items), _seed(ex, salt))
        seen = table.lookup(ex["interacted"])
        seen = tf.boolean_mask(seen, seen >= 0)
        scores = tf.tensor_scatter_nd_update(scores, seen[:, None], tf.fill(tf.shape(seen), 2.0))
        low, order = tf.math.top_k(-scores, k=min(count, int(items.shape[0])))
        return tf.boolean_mask(tf.gather(items, order), -low < 2.0)

    return sample


def _probe_fn(dataset_name: str):
    """f(ex) -> (item, answer): the target or a negative (50/50), "yes" or "no". Training
    negatives are sampled from never-interacted items, evaluation ones are the fixed prepared
    negatives."""
    sample = _unseen_sampler(dataset_name)

    def probe(ex):
        fixed = tf.gather(ex["negatives"], _uniform_int(ex, _SALT_NEG, tf.size(ex["negatives"])))
        sampled = tf.concat([sample(ex, 1, _SALT_NEG), [fixed]], axis=0)[0]
        negative = tf.where(ex["is_train"], sampled, fixed)
        positive = _coin(ex, _SALT_PROBE)
        return tf.where(positive, ex["target"], negative), tf.where(positive, "yes", "no")

    return probe


def add_probe_item(dataset, *, dataset_name: str):
    """{target, negatives, interacted} -> {item_id: target or a negative (50/50), answer: yes|no}
    (see `_probe_fn`)."""
    probe = _probe_fn(dataset_name)

    def fn(ex):
        item, answer = probe(ex)
        return {**ex, "item_id": item, "answer": answer}

    return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def add_ranked_probes(dataset, *, dataset_name: str, num_candidates: int = NUM_CANDIDATES):
    """Direct yes/no prompts (5-1..5-4), ranked as P5 evaluated them.

    Training: one probe per record, as `add_probe_item`. Evaluation: one example per candidate
    (the target first, then the prepared negatives, `num_candidates` in all), each with
    `item_id` = that candidate and `answer` yes for the target only; the evaluation ranks a
    user's candidates by p(yes). {target: t, negatives: [a, b]} -> 3 examples probing t, a, b.
    One pass over the records (seqio may repeat a source before preprocessing it).
    """
    probe = _probe_fn(dataset_name)

    def expand(ex):
        item, answer = probe(ex)
        candidates = tf.concat([[ex["target"]], ex["negatives"][:num_candidates - 1]], axis=0)
        ranked = tf.where(tf.range(tf.size(candidates)) == 0, "yes", "no")
        items = tf.cond(ex["is_train"], lambda: tf.reshape(item, [1]), lambda: candidates)
        answers = tf.cond(ex["is_train"], lambda: tf.reshape(answer, [1]), lambda: ranked)
        probes = tf.data.Dataset.from_tensor_slices((items, answers))
        return probes.map(lambda i, a: {**ex, "item_id": i, "answer": a})

    return dataset.flat_map(expand)


def add_candidates(dataset, *, dataset_name: str, num_candidates: int = NUM_CANDIDATES):
    """{target, negatives, interacted} -> {candidates: [target, negative, ...]}, target first
    (shuffled later, after the length fit). Evaluation uses the prepared negatives."""
    sample = _unseen_sampler(dataset_name)

    def candidates(ex):
        negatives = tf.cond(ex["is_train"], lambda: sample(ex, num_candidates - 1, _SALT_NEG),
                            lambda: ex["negatives"][:num_candidates - 1])
        ex = dict(ex)
        ex["candidates"] = tf.concat([[ex["target"]], negatives], axis=0)
        return ex

    return dataset.map(candidates, num_parallel_calls=tf.data.AUTOTUNE)


def add_item_titles(dataset, *, dataset_name: str):
    """{item_id} -> {item_id, item_title} from the dataset's item catalogue."""
    titles = tf.constant(list(catalog.item_titles(dataset_name)), dtype=tf.string)
    table = _lookup_table(catalog.item_ids(dataset_name))

    def title(ex):
        ex = dict(ex)
        index = table.lookup(ex["item_id"])
        ex["item_title"] = tf.where(index >= 0, tf.gather(titles, tf.maximum(index, 0)), "")
        return ex

    return dataset.map(title, num_parallel_calls=tf.data.AUTOTUNE)


@seqio.map_over_dataset
def choose_joiner(ex):
    """{} -> {joiner: "," or "->"} (50/50): how a history is written."""
    ex = dict(ex)
    ex["joiner"] = tf.where(_coin(ex, _SALT_JOIN), JOINERS[0], JOINERS[1])
    return ex


@seqio.map_over_dataset
def add_shown_star(ex):
    """{rating: 4} -> {star: 4 or another of 1..5 (50/50), answer: yes if star == rating}."""
    other = 1 + (ex["rating"] - 1 + 1 + _uniform_int(ex, _SALT_STAR, 4)) % 5
    truthful = _coin(ex, _SALT_PROBE)
    ex = dict(ex)
    ex["star"] = tf.where(truthful, ex["rating"], other)
    ex["answer"] = tf.where(truthful, "yes", "no")
    return ex


@seqio.map_over_dataset
def shuffle_candidates(ex):
    """{candidates: [t, a, b]} -> the same ids in a random order (fixed per record in eval)."""
    candidates = ex["candidates"]
    keys = tf.random.stateless_uniform(tf.shape(candidates), _seed(ex, _SALT_SHUFFLE))
    ex = dict(ex)
    ex["candidates"] = tf.gather(candidates, tf.argsort(keys))
    return ex
