"""TensorFlow only feeds input pipelines here: keep it off accelerators and out of the console."""
import contextlib
import os


@contextlib.contextmanager
def _stderr_silenced():
    """Silences file descriptor 2, where TensorFlow's C++ start-up messages go."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def quiet_tensorflow():
    """Imports TensorFlow, hides every GPU from it, and drops its start-up log noise.

    TF_CPP_MIN_LOG_LEVEL no longer silences the CUDA probing messages that TensorFlow prints
    before its logging is initialised, so the probe runs with stderr redirected. Set
    P5_TF_VERBOSE=1 to see them.
    """
    if os.environ.get("P5_TF_VERBOSE") == "1":
        import tensorflow as tf
        tf.config.set_visible_devices([], "GPU")
        return tf
    with _stderr_silenced():
        import tensorflow as tf
        tf.config.set_visible_devices([], "GPU")
        tf.constant(0)  # forces device set-up while stderr is silenced
    return tf
