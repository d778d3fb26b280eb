"""SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018) in Flax, a
sequential baseline trained and scored on a prepared dataset's own leave-one-out split.

Model: item embedding (scaled by sqrt(hidden)) plus a learned position embedding over the last
`max_len` items, left-padded so that the newest item always sits at the last position; dropout;
`num_blocks` blocks of causal self-attention and a point-wise feed-forward network, each sub-layer
x + dropout(f(layer_norm(x))) with padded positions zeroed; a final layer norm. The next item's
logits are dot products with the same item embedding. Loss: full softmax cross-entropy over all
items at every non-padded position (the paper samples one negative; a full softmax is stronger
and leaves no sampling to tune). Optimiser: Adam (betas 0.9, 0.98, as the paper's code).

Training data: each user's training items, oldest first, cut from the newest end into windows of
`max_len` + 1 items, so that each training transition is a target once per epoch
(`windows="all"`); `windows="last"` keeps only each user's newest window, as the paper's code
does. Batches hold windows of similar length, cut to the bucket that fits them
(`length_buckets`), so that short histories do not pay for 50 positions. Early stopping on
validation NDCG@10 (the validation item ranked after the training items). The paper set dropout
per dataset (0.2 on MovieLens-1m, 0.5 on the sparser sets); `train_choosing_dropout` trains one
model per rate and keeps the best by the same validation NDCG@10.

Scoring (`Ranker.rank`): the last `max_len` items of a history in, every item ranked by the final
position's logits, the history's own items left out (the most-popular baseline's exclusion), the
first `top_k` item ids out: lists that `metrics.ranking_metrics` takes unchanged.

The cache of a trained model: `p5_jax.sasrec_cache`.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from tqdm.auto import tqdm

from p5_jax import metrics

PAD = 0  # embedding row 0 pads; item k of the index is row k + 1
WINDOWS = ("all", "last")
DEFAULT_TOP_K = 20
EARLY_STOP_METRIC = "ndcg@10"
DROPOUT_CHOICES = (0.2, 0.5)   # the paper's rates: MovieLens-1m, and its sparser datasets
_SCORE_BATCH = 256


@dataclasses.dataclass(frozen=True)
class Settings:
    """Model and training settings; the defaults are the paper's (hidden 64, 2 blocks, 1 head,
    length 50, dropout 0.2, learning rate 1e-3)."""
    max_len: int = 50
    hidden: int = 64
    num_blocks: int = 2
    num_heads: int = 1
    dropout: float = 0.2
    learning_rate: float = 1e-3
    batch_size: int = 128
    max_epochs: int = 200
    patience: int = 10
    windows: str = "all"
    seed: int = 0

    def __post_init__(self):
        for name in ("max_len", "hidden", "num_blocks", "num_heads", "batch_size", "max_epochs",
                     "patience"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.hidden % self.num_heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by {self.num_heads} heads")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.windows not in WINDOWS:
            raise ValueError(f"windows must be one of {WINDOWS}, got {self.windows!r}")


class ItemIndex:
    """Item ids <-> embedding rows 1..N (row 0 is padding)."""

    def __init__(self, item_ids: Sequence[str]):
        self.ids = [str(i) for i in item_ids]
        if not self.ids or len(set(self.ids)) != len(self.ids):
            raise ValueError("item ids must be a non-empty list without repeats")
        self._rows = {item: row for row, item in enumerate(self.ids, start=1)}

    def __len__(self) -> int:
        return len(self.ids)

    def encode(self, items: Sequence[str]) -> list[int]:
        try:
            return [self._rows[str(i)] for i in items]
        except KeyError as error:
            raise ValueError(f"item {error.args[0]!r} is not in the item catalogue") from None

    def decode(self, rows: Sequence[int]) -> list[str]:
        return [self.ids[r - 1] for r in rows]


# -- model --------------------------------------------------------------------------------------
class _Block(nn.Module):
    """Causal self-attention then a point-wise feed-forward network, each pre-normed, residual."""
    hidden: int
    num_heads: int
    dropout: float

    @nn.compact
    def __call__(self, x, mask, *, train: bool):
        def drop(y):
            return nn.Dropout(self.dropout)(y, deterministic=not train)

        h = nn.LayerNorm(epsilon=1e-8)(x)
        h = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, dropout_rate=self.dropout)(
            h, h, mask=mask, deterministic=not train)
        x = x + drop(h)
        h = nn.LayerNorm(epsilon=1e-8)(x)
        h = drop(nn.relu(nn.Dense(self.hidden)(h)))
        return x + drop(nn.Dense(self.hidden)(h))


class SASRec(nn.Module):
    """Items (batch, length), row ids with 0 for padding -> next-item logits over all rows."""
    num_items: int
    max_len: int
    hidden: int
    num_blocks: int
    num_heads: int
    dropout: float

    def setup(self):
        self.item_embedding = nn.Embed(self.num_items + 1, self.hidden)
        self.position_embedding = nn.Embed(self.max_len, self.hidden)
        self.input_dropout = nn.Dropout(self.dropout)
        self.blocks = [_Block(self.hidden, self.num_heads, self.dropout)
                       for _ in range(self.num_blocks)]
        self.final_norm = nn.LayerNorm(epsilon=1e-8)

    def encode(self, items, *, train: bool = False):
        """Hidden state (batch, length, hidden) of every position; padded positions are zero
        before the final norm and never attended to. A length under max_len is a window with
        its leftmost padding cut off: positions count back from max_len - 1 at the last item,
        so the result at the items is the same as for the full window."""
        valid = (items != PAD)[..., None]
        length = items.shape[1]
        x = (self.item_embedding(items) * jnp.sqrt(float(self.hidden))
             + self.position_embedding(jnp.arange(self.max_len - length, self.max_len))[None])
        x = self.input_dropout(x, deterministic=not train) * valid
        mask = nn.combine_masks(nn.make_causal_mask(items),
                                nn.make_attention_mask(items != PAD, items != PAD))
        for block in self.blocks:
            x = block(x, mask, train=train) * valid
        return self.final_norm(x)

    def __call__(self, items, *, train: bool = False):
        return self.item_embedding.attend(self.encode(items, train=train))

    def last_logits(self, items):
        return self.item_embedding.attend(self.encode(items)[:, -1])


def make_model(settings: Settings, num_items: int) -> SASRec:
    return SASRec(num_items=num_items, max_len=settings.max_len, hidden=settings.hidden,
                  num_blocks=settings.num_blocks, num_heads=settings.num_heads,
                  dropout=settings.dropout)


def init_params(model: SASRec, seed: int) -> dict:
    dummy = jnp.zeros((1, model.max_len), jnp.int32)
    return model.init({"params": jax.random.PRNGKey(seed)}, dummy)["params"]


def cross_entropy(logits, targets):
    """Mean full-softmax cross-entropy over the positions whose target is not padding; the
    padding row is never a candidate."""
    logits = logits.at[..., PAD].set(-1e9)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    weights = (targets != PAD).astype(losses.dtype)
    return (losses * weights).sum() / jnp.maximum(weights.sum(), 1.0)


# -- data ---------------------------------------------------------------------------------------
def left_pad(rows: Sequence[int], length: int) -> list[int]:
    """The last `length` rows, padded on the left to `length`."""
    rows = list(rows)[-length:] if length else []
    return [PAD] * (length - len(rows)) + rows


def training_windows(sequences: Sequence[Sequence[int]], *, max_len: int,
                     windows: str = "all") -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets), int32 (W, max_len), left-padded: each window's items and the next.

    Windows of max_len + 1 items are cut from the newest end of each sequence, every
    transition a target exactly once ("all"), or only the newest window ("last").
    """
    if windows not in WINDOWS:
        raise ValueError(f"windows must be one of {WINDOWS}, got {windows!r}")
    inputs, targets = [], []
    for sequence in sequences:
        end = len(sequence)
        while end >= 2:
            chunk = list(sequence[max(0, end - max_len - 1):end])
            inputs.append(left_pad(chunk[:-1], max_len))
            targets.append(left_pad(chunk[1:], max_len))
            if windows == "last":
                break
            end -= max_len
    shape = (len(inputs), max_len)
    return (np.asarray(inputs, np.int32).reshape(shape),
            np.asarray(targets, np.int32).reshape(shape))


def _batch_rows(rows: np.ndarray, batch_size: int) -> np.ndarray:
    """`rows` padded with all-padding rows up to `batch_size` (one compiled shape)."""
    missing = batch_size - len(rows)
    if not missing:
        return rows
    return np.concatenate([rows, np.zeros((missing,) + rows.shape[1:], rows.dtype)])


# -- scoring ------------------------------------------------------------------------------------
def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row the column indices of the `k` highest finite scores, best first (equal scores:
    lower index first); -1 fills a row with fewer than k finite scores."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -values), axis=1)
    best = np.take_along_axis(part, order, axis=1)
    return np.where(np.isfinite(np.take_along_axis(values, order, axis=1)), best, -1)


@functools.lru_cache(maxsize=8)
def _last_logits_fn(model: SASRec) -> Callable:
    """jit'd (params, items) -> final-position logits, compiled once per model shape."""
    return jax.jit(lambda p, x: model.apply({"params": p}, x, method=SASRec.last_logits))


class Ranker:
    """A trained SASRec's next-item logits and rankings for item-id histories."""

    def __init__(self, *, settings: Settings, items: ItemIndex, params):
        self.settings, self.items, self.params = settings, items, params
        self._last_logits = _last_logits_fn(make_model(settings, len(items)))

    def _inputs(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        return np.asarray([left_pad(self.items.encode(h), self.settings.max_len)
                           for h in histories], np.int32).reshape(-1, self.settings.max_len)

    def logits(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        """(n, num_items + 1) float32 logits of the item after each history's last `max_len`
        items; column r is embedding row r (column 0, padding, is meaningless)."""
        out = []
        for start in range(0, len(histories), _SCORE_BATCH):
            chunk = self._inputs(histories[start:start + _SCORE_BATCH])
            batch = _batch_rows(chunk, _SCORE_BATCH)
            out.append(np.asarray(self._last_logits(self.params, batch))[:len(chunk)])
        return np.concatenate(out) if out else np.zeros((0, len(self.items) + 1), np.float32)

    def masked_scores(self, histories: Sequence[Sequence[str]], *,
                      exclude_history: bool = True) -> np.ndarray:
        """`logits` with padding, and (by default) each history's own items, set to -inf."""
        scores = self.logits(histories)
        scores[:, PAD] = -np.inf
        if exclude_history:
            for row, history in enumerate(histories):
                scores[row, self.items.encode(history)] = -np.inf
        return scores

    def rank(self, histories: Sequence[Sequence[str]], *, top_k: int = DEFAULT_TOP_K,
             exclude_history: bool = True) -> list[list[str]]:
        """Per history, the `top_k` item ids of highest final-position logit, best first.

        With `exclude_history` the history's items are left out: pass each user's whole
        history before the evaluated item (at test: training items and the validation item).
        """
        if top_k < 1:
            raise ValueError(f"top_k must be positive, got {top_k}")
        ranked = []
        for start in range(0, len(histories), _SCORE_BATCH):  # (batch, items) scores at a time
            scores = self.masked_scores(histories[start:start + _SCORE_BATCH],
                                        exclude_history=exclude_history)
            ranked += [self.items.decode([c for c in row if c > 0])
                       for row in top_k_rows(scores, top_k)]
        return ranked


# -- training -----------------------------------------------------------------------------------
@dataclasses.dataclass
class TrainResult:
    """The best epoch's ranker, and per epoch {"epoch", "loss", "ndcg@10", ...} on validation."""
    ranker: Ranker
    curve: list[dict]
    best_epoch: int
    seconds: float
    validation: dict

    @property
    def epochs_run(self) -> int:
        return len(self.curve)


def _optimizer(learning_rate: float):
    return optax.adam(learning_rate, b1=0.9, b2=0.98)


@functools.lru_cache(maxsize=8)
def _train_step(model: SASRec, learning_rate: float) -> Callable:
    """jit'd (params, opt_state, inputs, targets, dropout rng) -> (params, opt_state, loss),
    compiled once per model shape and learning rate."""
    optimizer = _optimizer(learning_rate)

    def loss_fn(params, inputs, targets, rng):
        logits = model.apply({"params": params}, inputs, train=True, rngs={"dropout": rng})
        return cross_entropy(logits, targets)

    @jax.jit
    def step(params, opt_state, inputs, targets, rng):
        loss, grads = jax.value_and_grad(loss_fn)(params, inputs, targets, rng)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def length_buckets(max_len: int) -> tuple[int, ...]:
    """Lengths a training batch is cut to: powers of two from 8 below max_len, then max_len.
    Short windows (most users of sparse datasets) then cost a fraction of a full window."""
    return tuple(8 << i for i in range(max_len.bit_length()) if 8 << i < max_len) + (max_len,)


def epoch_batches(inputs: np.ndarray, *, settings: Settings, epoch: int) -> list[tuple]:
    """(row indices, length) of each batch of one epoch: windows grouped by the shortest bucket
    that holds their items, shuffled within buckets, batches in a seeded order."""
    rng = np.random.default_rng([settings.seed, epoch])
    buckets = length_buckets(settings.max_len)
    which = np.searchsorted(buckets, (inputs != PAD).sum(axis=1))
    batches = []
    for bucket, length in enumerate(buckets):
        rows = rng.permutation(np.flatnonzero(which == bucket))
        batches += [(rows[start:start + settings.batch_size], length)
                    for start in range(0, len(rows), settings.batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _epoch(step, state, inputs, targets, *, settings: Settings, epoch: int, key) -> float:
    """One pass over the windows (`epoch_batches`); updates state [params, opt_state] in place
    and returns the mean batch loss."""
    losses = []
    for number, (rows, length) in enumerate(epoch_batches(inputs, settings=settings,
                                                          epoch=epoch)):
        cut = slice(settings.max_len - length, None)
        rng = jax.random.fold_in(jax.random.fold_in(key, epoch), number)
        state[0], state[1], loss = step(state[0], state[1],
                                        _batch_rows(inputs[rows, cut], settings.batch_size),
                                        _batch_rows(targets[rows, cut], settings.batch_size), rng)
        losses.append(loss)
    return float(np.mean(jax.device_get(losses)))


def evaluate(ranker: Ranker, histories: Sequence[Sequence[str]], targets: Sequence[str], *,
             top_k: int = DEFAULT_TOP_K) -> dict:
    """`metrics.ranking_metrics` of the ranker's lists (histories excluded) against targets."""
    return metrics.ranking_metrics(list(targets), ranker.rank(histories, top_k=top_k))


def _start(settings: Settings, num_items: int) -> tuple[Callable, list]:
    """(the compiled train step, [initial params, optimizer state]) for a seed."""
    params = init_params(make_model(settings, num_items), settings.seed)
    return (_train_step(make_model(settings, num_items), settings.learning_rate),
            [params, _optimizer(settings.learning_rate).init(params)])


def train(*, train_histories: Sequence[Sequence[str]],
          validation_histories: Sequence[Sequence[str]], validation_targets: Sequence[str],
          item_ids: Sequence[str], settings: Settings = Settings(),
          progress: bool = True) -> TrainResult:
    """Trains on the training histories (item ids, oldest first) with early stopping on the
    validation NDCG@10; returns the best epoch's ranker. Deterministic given settings.seed."""
    if not validation_targets or len(validation_histories) != len(validation_targets):
        raise ValueError("validation needs one history per target, and at least one target")
    items = ItemIndex(item_ids)
    inputs, targets = training_windows([items.encode(h) for h in train_histories],
                                       max_len=settings.max_len, windows=settings.windows)
    if not len(inputs):
        raise ValueError("no training history has two items: nothing to learn from")
    step, state = _start(settings, len(items))
    key = jax.random.PRNGKey(settings.seed + 1)  # dropout
    curve, best, best_params, started = [], None, None, time.perf_counter()
    bar = tqdm(range(1, settings.max_epochs + 1), desc="SASRec", unit="epoch",
               disable=not progress)
    for epoch in bar:
        loss = _epoch(step, state, inputs, targets, settings=settings, epoch=epoch, key=key)
        ranker = Ranker(settings=settings, items=items, params=state[0])
        scores = evaluate(ranker, validation_histories, validation_targets)
        curve.append({"epoch": epoch, "loss": loss, **scores})
        bar.set_postfix(loss=f"{loss:.3f}", val_ndcg10=f"{scores[EARLY_STOP_METRIC]:.4f}")
        if best is None or scores[EARLY_STOP_METRIC] > best[EARLY_STOP_METRIC]:
            best, best_params = curve[-1], jax.device_get(state[0])
        elif epoch - best["epoch"] >= settings.patience:
            break
    bar.close()
    assert best is not None, "Settings holds max_epochs >= 1"
    return TrainResult(ranker=Ranker(settings=settings, items=items, params=best_params),
                       curve=curve, best_epoch=best["epoch"],
                       seconds=time.perf_counter() - started,
                       validation={k: v for k, v in best.items() if k not in ("epoch", "loss")})


def train_choosing_dropout(*, dropouts: Sequence[float], settings: Settings = Settings(),
                           **data) -> tuple[TrainResult, dict[float, float]]:
    """`train` once per dropout rate (`settings` otherwise); the result of the best validation
    NDCG@10 (the first of ties, in `dropouts` order) and each rate's validation NDCG@10."""
    if not dropouts:
        raise ValueError("dropouts needs at least one rate")
    grid = [dataclasses.replace(settings, dropout=float(rate)) for rate in dropouts]
    results = [train(settings=one, **data) for one in grid]
    scores = {one.dropout: result.validation[EARLY_STOP_METRIC]
              for one, result in zip(grid, results)}
    return max(results, key=lambda r: r.validation[EARLY_STOP_METRIC]), scores
