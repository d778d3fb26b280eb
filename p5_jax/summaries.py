"""TensorBoard scalars (process 0 only) and a console progress bar."""
from __future__ import annotations

import os
import time

import jax
import tqdm


class TrainingLog:
    """Writes scalars to `<logdir>` as TensorBoard events and drives a tqdm bar.

    Only the process with index 0 writes events and shows the bar; the others log nothing, so a
    multi-host job produces one set of summaries.
    """

    def __init__(self, *, logdir: str | os.PathLike, total_steps: int, initial_step: int = 0,
                 process_index: int | None = None, show_progress: bool = True):
        self.process_index = jax.process_index() if process_index is None else process_index
        self.is_writer = self.process_index == 0
        from clu import metric_writers  # imported here: it pulls in TensorFlow
        self._writer = (metric_writers.create_default_writer(os.fspath(logdir), asynchronous=False)
                        if self.is_writer else None)
        self._bar = tqdm.tqdm(total=total_steps, initial=initial_step, unit="step",
                              disable=not (self.is_writer and show_progress), dynamic_ncols=True)

    def write_scalars(self, *, step: int, scalars: dict[str, float], prefix: str = "") -> None:
        if self._writer is None:  # not the writing process
            return
        values = {f"{prefix}{name}": float(value) for name, value in scalars.items()}
        self._writer.write_scalars(step, values)
        self._bar.set_postfix({name: f"{value:.4g}" for name, value in values.items()
                               if name.endswith(("loss", "accuracy"))}, refresh=False)

    def advance(self, steps: int = 1) -> None:
        self._bar.update(steps)

    def close(self) -> None:
        self._bar.close()
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()


class Throughput:
    """Tokens per second and seconds per step between two log points."""

    def __init__(self, *, step: int):
        self._step, self._tokens, self._time = step, 0, time.perf_counter()

    def add_tokens(self, count: int) -> None:
        self._tokens += count

    def measure(self, *, step: int) -> dict[str, float]:
        now = time.perf_counter()
        elapsed, steps = max(now - self._time, 1e-9), max(step - self._step, 1)
        figures = {"tokens_per_second": self._tokens / elapsed, "step_time": elapsed / steps}
        self._step, self._tokens, self._time = step, 0, now
        return figures
