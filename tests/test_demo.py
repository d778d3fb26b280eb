"""The demo reads its loss curve back from the training run's TensorBoard events."""
from p5_jax import demo, summaries


def test_loss_history_reads_back_written_scalars(tmp_path):
    log = summaries.TrainingLog(logdir=tmp_path, total_steps=3, show_progress=False)
    for step, loss in ((1, 4.5), (2, 3.25), (3, 2.0)):
        log.write_scalars(step=step, scalars={"loss": loss, "accuracy": 0.1}, prefix="train/")
    log.close()
    assert demo.loss_history(tmp_path) == [(1, 4.5), (2, 3.25), (3, 2.0)]
    assert demo.loss_history(tmp_path, tag="train/accuracy")[0][1] == 0.10000000149011612
