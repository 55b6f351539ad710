"""Progress for long work: a live bar on a terminal, plain lines anywhere else.

On a terminal the bar is tqdm's (rate, time left), redrawn in place. Into a file or a pipe
(a log, CI, ``2> train.log``) every redraw would stay behind, carriage returns and all, so
there a plain line is written instead, at most every `every` seconds, and one at the end:

    training: 150/1000 step (15%), loss=123.4, recon=110.2, kl=16.00, img_s=452
"""
import sys
import time


def bar(total, desc, unit, enabled=True, initial=0, stream=None, every=30.0):
    """A progress bar with tqdm's update / set_postfix / close: tqdm's on a terminal, Lines elsewhere,
    and one that shows nothing when not enabled."""
    from tqdm import tqdm
    stream = stream or sys.stderr
    if enabled and not is_terminal(stream):
        return Lines(total, desc, unit, initial, stream, every)
    return tqdm(total=total, initial=initial, unit=unit, desc=desc, disable=not enabled, file=stream,
                dynamic_ncols=True)


def is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):                # no isatty, or a closed stream
        return False


class Lines:
    """Progress as plain lines: one when `every` seconds have passed since the last, and one at the end."""

    def __init__(self, total, desc, unit, initial=0, stream=None, every=30.0):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.stream, self.every, self.postfix = stream or sys.stderr, every, {}
        self._last, self._shown = time.monotonic(), initial

    def update(self, n=1):
        self.n += n
        if time.monotonic() - self._last >= self.every:
            self._line()

    def set_postfix(self, refresh=False, **values):
        self.postfix = values

    def close(self):
        if self.n != self._shown:
            self._line()

    def _line(self):
        share = f" ({self.n / self.total:.0%})" if self.total else ""
        extra = "".join(f", {k}={v}" for k, v in self.postfix.items())
        print(f"{self.desc}: {self.n}/{self.total} {self.unit}{share}{extra}", file=self.stream, flush=True)
        self._last, self._shown = time.monotonic(), self.n
