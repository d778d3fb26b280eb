"""Optimizer, sharded train state and the jitted train/eval steps.

The state is created already sharded (abstract shapes first, then a jit with out_shardings); the
train step takes the state and a batch with NamedShardings and donates the old state.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from p5_jax import partitioning, summaries

SCHEDULES = ("constant", "linear", "cosine", "rsqrt")


def make_schedule(*, name: str = "linear", peak_value: float = 1e-3, warmup_steps: int = 0,
                  total_steps: int = 1, end_value: float = 0.0) -> optax.Schedule:
    """Linear warmup to `peak_value`, then the named decay until `total_steps`.

    `linear` is P5's default (warmup then linear decay to `end_value`); `rsqrt` is T5's
    inverse-square-root decay after warmup.
    """
    if name not in SCHEDULES:
        raise ValueError(f"Unknown schedule {name!r}; choose one of {SCHEDULES}.")
    if warmup_steps < 0 or total_steps <= 0:
        raise ValueError(f"Need warmup_steps >= 0 and total_steps > 0, got "
                         f"{warmup_steps} and {total_steps}.")
    decay_steps = max(total_steps - warmup_steps, 1)
    if name == "constant":
        decay = optax.constant_schedule(peak_value)
    elif name == "linear":
        decay = optax.linear_schedule(peak_value, end_value, decay_steps)
    elif name == "cosine":
        decay = optax.cosine_decay_schedule(peak_value, decay_steps, alpha=end_value / peak_value)
    else:
        offset = max(warmup_steps, 1)
        decay = lambda count: peak_value * jax.lax.rsqrt((count + offset) / offset)  # noqa: E731
    if warmup_steps == 0:
        return decay
    warmup = optax.linear_schedule(0.0, peak_value, warmup_steps)
    return optax.join_schedules([warmup, decay], [warmup_steps])


def _decay_mask(params):
    """Weight decay on matrices only; norm scales and other vectors are left alone."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make_adamw(*, learning_rate: optax.Schedule | float, weight_decay: float = 0.01,
               b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6,
               max_grad_norm: float | None = 1.0) -> optax.GradientTransformation:
    """AdamW with global-norm gradient clipping (P5: eps 1e-6, clip 1.0, decay 0.01)."""
    adamw = optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                        mask=_decay_mask)
    if max_grad_norm is None or max_grad_norm <= 0:
        return adamw
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), adamw)


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any


def _sum_metrics(aux, loss):
    return {"loss": loss, "loss_sum": aux["loss_sum"], "num_tokens": aux["num_tokens"],
            "num_correct": aux["num_correct"], "z_loss": aux.get("z_loss", jnp.zeros(()))}


class Trainer:
    """Jitted, sharded train and eval steps around an `EncoderDecoderModel`.

    `model` needs `init(rng, *, batch_size, input_length, target_length)` returning params boxed
    with logical axis names, and `loss_fn(params, batch, dropout_rng)` returning
    `(loss, {"loss_sum", "num_tokens", "num_correct", ...})`.
    """

    def __init__(self, *, model, optimizer: optax.GradientTransformation, mesh,
                 batch_size: int, input_length: int, target_length: int,
                 learning_rate_fn: optax.Schedule | None = None, accumulation_steps: int = 1,
                 dropout_seed: int = 0, dropout_rng_impl: str = "rbg",
                 rules=partitioning.LOGICAL_AXIS_RULES):
        partitioning.check_batch_size(batch_size=batch_size, mesh=mesh,
                                      accumulation_steps=accumulation_steps)
        self.model, self.optimizer, self.mesh, self.rules = model, optimizer, mesh, rules
        self.batch_size = batch_size
        self.input_length, self.target_length = input_length, target_length
        self.learning_rate_fn = learning_rate_fn
        self.accumulation_steps = accumulation_steps
        # "rbg" (XLA's RngBitGenerator) makes dropout masks far faster than threefry on CPU and
        # GPU; masks are a pure function of (seed, step), so resumed runs repeat them exactly.
        self.dropout_seed, self.dropout_rng_impl = dropout_seed, dropout_rng_impl
        self.batch_sharding = partitioning.batch_sharding(mesh)
        self.state_shardings = partitioning.logical_shardings(
            self._abstract_boxed_state(), mesh=mesh, rules=rules)
        self._jit_init = jax.jit(lambda rng: nn.unbox(self._init_boxed_state(rng)),
                                 out_shardings=self.state_shardings)
        self._jit_train_step = jax.jit(
            self._train_step, in_shardings=(self.state_shardings, self.batch_sharding),
            out_shardings=(self.state_shardings, partitioning.replicated(mesh)),
            donate_argnums=(0,))
        self._jit_eval_step = jax.jit(
            self._eval_step, in_shardings=(self.state_shardings.params, self.batch_sharding),
            out_shardings=partitioning.replicated(mesh))

    # -- state ---------------------------------------------------------------------------------
    def _init_boxed_state(self, rng) -> TrainState:
        params = self.model.init(rng, batch_size=self.batch_size // self.accumulation_steps,
                                 input_length=self.input_length,
                                 target_length=self.target_length)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=self.optimizer.init(params))

    def _abstract_boxed_state(self):
        return jax.eval_shape(self._init_boxed_state, jax.random.PRNGKey(0))

    def create_state(self, *, seed: int) -> TrainState:
        """Initialises parameters and optimizer state directly into their shardings."""
        with partitioning.sharding_context(self.mesh, self.rules):
            return self._jit_init(jax.random.PRNGKey(seed))

    def abstract_state(self) -> TrainState:
        """Shapes, dtypes and shardings of the state (the target for checkpoint restore)."""
        abstract = nn.unbox(self._abstract_boxed_state())
        return jax.tree.map(
            lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                                        sharding=sharding),
            abstract, self.state_shardings)

    def put_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """The global batch (the same on every process) as arrays split over the data axis."""
        return partitioning.global_batch_arrays(batch, self.batch_sharding)

    def train_step(self, state: TrainState, batch) -> tuple[TrainState, dict]:
        """One optimizer update; `state` is donated and must not be used afterwards."""
        with partitioning.sharding_context(self.mesh, self.rules):
            return self._jit_train_step(state, batch)

    def train_step_flops(self, state: TrainState, batch) -> float | None:
        """Floating-point operations of one train step as XLA counts them (matmuls and every
        other op), or None where the backend gives no cost analysis. Compiles, runs nothing."""
        with partitioning.sharding_context(self.mesh, self.rules):
            costs = self._jit_train_step.lower(state, batch).compile().cost_analysis()
        if isinstance(costs, (list, tuple)):  # older jax: one dict per computation
            costs = costs[0] if costs else None
        flops = (costs or {}).get("flops")
        return float(flops) if flops and flops > 0 else None

    def eval_step(self, params, batch) -> dict:
        """Summed loss, token and correct-token counts of one batch (no dropout)."""
        with partitioning.sharding_context(self.mesh, self.rules):
            return self._jit_eval_step(params, batch)

    # -- steps ---------------------------------------------------------------------------------
    def _micro_grads(self, params, micro_batch, dropout_rng):
        grad_fn = jax.value_and_grad(self.model.loss_fn, has_aux=True)
        (loss, aux), grads = grad_fn(params, micro_batch, dropout_rng)
        return grads, _sum_metrics(aux, loss)

    def _accumulated_grads(self, params, batch, dropout_rng):
        k = self.accumulation_steps
        if k == 1:
            return self._micro_grads(params, batch, dropout_rng)
        # Row i*k + j goes to micro-batch j, so every device keeps its own rows (no transfer).
        micro = jax.tree.map(
            lambda x: jnp.swapaxes(x.reshape((x.shape[0] // k, k) + x.shape[1:]), 0, 1), batch)
        micro = jax.lax.with_sharding_constraint(
            micro, jax.sharding.NamedSharding(
                self.mesh, jax.sharding.PartitionSpec(None, partitioning.DATA_AXIS)))

        def body(carry, inputs):
            index, micro_batch = inputs
            grads, metrics = self._micro_grads(params, micro_batch,
                                               jax.random.fold_in(dropout_rng, index))
            return jax.tree.map(jnp.add, carry, (grads, metrics)), None

        zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(
            self._micro_grads, params, jax.tree.map(lambda x: x[0], micro), dropout_rng))
        (grads, metrics), _ = jax.lax.scan(body, zeros, (jnp.arange(k), micro))
        grads = jax.tree.map(lambda g: g / k, grads)
        metrics["loss"] = metrics["loss"] / k
        metrics["z_loss"] = metrics["z_loss"] / k
        return grads, metrics

    def _train_step(self, state: TrainState, batch):
        base_key = jax.random.key(self.dropout_seed, impl=self.dropout_rng_impl)
        dropout_rng = jax.random.fold_in(base_key, state.step)
        grads, metrics = self._accumulated_grads(state.params, batch, dropout_rng)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = _summarise(metrics)
        metrics["grad_norm"] = optax.global_norm(grads)
        if self.learning_rate_fn is not None:
            metrics["learning_rate"] = jnp.asarray(self.learning_rate_fn(state.step), jnp.float32)
        new_state = dataclasses.replace(state, step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, metrics

    def _eval_step(self, params, batch):
        loss, aux = self.model.loss_fn(params, batch, None)
        return _sum_metrics(aux, loss)


def _summarise(metrics):
    """Token-weighted loss and accuracy from summed counts."""
    num_tokens = jnp.maximum(metrics["num_tokens"], 1)
    return {"loss": metrics["loss"],
            "token_loss": metrics["loss_sum"] / num_tokens,
            "accuracy": metrics["num_correct"] / num_tokens,
            "num_tokens": metrics["num_tokens"], "z_loss": metrics["z_loss"]}


def summarise_eval(summed: dict[str, float]) -> dict[str, float]:
    """Validation loss and accuracy from eval-step metrics summed over batches."""
    num_tokens = max(float(summed["num_tokens"]), 1.0)
    return {"loss": float(summed["loss_sum"]) / num_tokens,
            "accuracy": float(summed["num_correct"]) / num_tokens}


# -- the loop ------------------------------------------------------------------------------------
def initial_state(*, trainer: Trainer, seed: int, checkpointer=None, batches=None) -> TrainState:
    """The newest intact checkpoint (restoring the input position into `batches`), or a fresh
    state when there is no step folder at all: damaged steps never start the run over."""
    if checkpointer is None or not checkpointer.step_folders():
        return trainer.create_state(seed=seed)
    state, position = checkpointer.restore(abstract_state=trainer.abstract_state())
    if batches is not None:
        batches.restore(position)
    return state


def evaluate(*, trainer: Trainer, params, batches: Iterable[dict]) -> dict[str, float]:
    """Token-weighted loss and accuracy over global batches."""
    summed = None
    for batch in batches:
        metrics = trainer.eval_step(params, trainer.put_batch(batch))
        summed = metrics if summed is None else jax.tree.map(jnp.add, summed, metrics)
    if summed is None:
        raise ValueError("The evaluation stream yielded no batches.")
    return summarise_eval(jax.device_get(summed))


def _mean_scalars(history: list[dict]) -> dict[str, float]:
    fetched = jax.device_get(history)
    return {name: float(np.mean([m[name] for m in fetched])) for name in fetched[0]
            if name != "num_tokens"}


def fit(*, trainer: Trainer, batches, total_steps: int, seed: int = 0, checkpointer=None,
        log=None, log_every: int = 100, eval_every: int = 0,
        eval_batches_fn: Callable[[], Iterable[dict]] | None = None) -> TrainState:
    """Trains until `total_steps`, resuming from `checkpointer`'s latest step if there is one.

    `batches` yields global batches (every process the same) and has `position` / `restore`
    (`input_pipeline.GlobalBatches`); `log` a `summaries.TrainingLog` (or None);
    `eval_batches_fn()` returns a fresh iterable of global validation batches.
    """
    if log_every <= 0:
        raise ValueError(f"log_every must be positive, got {log_every}.")
    state = initial_state(trainer=trainer, seed=seed, checkpointer=checkpointer, batches=batches)
    start = int(jax.device_get(state.step))
    throughput, history = summaries.Throughput(step=start), []
    for step in range(start + 1, total_steps + 1):
        batch = next(batches)
        state, metrics = trainer.train_step(state, trainer.put_batch(batch))
        history.append(metrics)
        throughput.add_tokens(_num_positions(batch))
        if log is not None:
            log.advance()
        if step % log_every == 0 or step == total_steps:
            scalars = _mean_scalars(history) | throughput.measure(step=step)
            history = []
            if log is not None:
                log.write_scalars(step=step, scalars=scalars, prefix="train/")
        if eval_every and eval_batches_fn is not None and step % eval_every == 0:
            scalars = evaluate(trainer=trainer, params=state.params, batches=eval_batches_fn())
            if log is not None:
                log.write_scalars(step=step, scalars=scalars, prefix="validation/")
        if checkpointer is not None:
            checkpointer.save(step=step, state=state, data_position=batches.position,
                              force=step == total_steps)
    if checkpointer is not None:
        checkpointer.wait()
    return state


def _num_positions(batch: dict) -> int:
    """Encoder plus decoder token positions in a batch (the tokens/s numerator)."""
    return int(batch["encoder_input_tokens"].size + batch["decoder_target_tokens"].size)
