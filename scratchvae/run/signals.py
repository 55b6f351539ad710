"""SIGINT and SIGTERM during a run: the first asks for a checkpoint and a stop after this step (with several
ranks, at the next log row: a signal reaches the ranks at different steps, and they agree there on one), the
second stops at once (every file is written whole or not at all, so nothing is left half-written)."""
import signal


class Signals:
    def __init__(self, world, say, log_every, at_once):
        """say(message): where "heard" is said; at_once(name, signum): the TrainingStopped a second signal raises."""
        self.world, self.say, self.log_every, self.at_once = world, say, log_every, at_once
        self.heard = 0                              # the signal this process heard (0: none)
        self.agreed = 0                             # the one the ranks agreed on at the last log row
        self._old = {}

    @property
    def stopping(self):
        """The signal the run stops for after this step (0: none)."""
        return self.heard if self.world.alone else self.agreed

    def __enter__(self):
        self._old = {s: signal.signal(s, self) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc):
        for s, handler in self._old.items():
            signal.signal(s, handler)

    def __call__(self, signum, frame):
        name = signal.Signals(signum).name
        if self.heard:                              # the second: stop now
            raise self.at_once(name, signum)
        self.heard = signum
        if self.world.alone:
            self.say(f"{name} received: stopping after this step, with a checkpoint (send it again to stop at once)")
        elif self.world.rank == 0:
            self.say(f"{name} received: stopping at the next log row (the ranks agree there, every "
                     f"{self.log_every} steps), with a checkpoint (send it again to stop at once)")
