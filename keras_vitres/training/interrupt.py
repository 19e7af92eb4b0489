"""Ctrl-C during training: a backup of the step reached, then `TrainingInterrupted`, which the same run resumes."""

import contextlib
import signal
import threading


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped `train` after a backup of the step reached; the same configuration resumes from it.

    A `KeyboardInterrupt`, so code that lets Ctrl-C through lets this through too.

    Attributes:
        run_dir: the run directory.
        step: the step the backup holds.
        total_steps: the run's length.
        backup: the path of the backup's weights file.
    """

    def __init__(self, run_dir, step, total_steps, backup):
        self.run_dir, self.step, self.total_steps, self.backup = run_dir, step, total_steps, backup
        super().__init__(f"interrupted at step {step} of {total_steps}; the training state was saved to {backup!r}, "
                         f"and running the same configuration again resumes {run_dir!r} from step {step}.")


@contextlib.contextmanager
def stop_on_sigint(backup):
    """While training, a first Ctrl-C asks `backup` for a backup and a stop after the step in progress; a second
    one interrupts at once (the backups on disk stay intact: each is written under a temporary name first)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nCtrl-C: saving the training state after this step (Ctrl-C again to quit without it)...", flush=True)
        backup.request_stop()

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
