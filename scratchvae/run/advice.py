"""What a stopped run tells its user to type next, and why: the commands that resume it or start it again,
at a lower learning rate once it has diverged at this one (so that no message repeats the setting it named
as the cause), and the messages for a run that stopped (a divergence, running out of memory)."""
import shlex
import sys

from .runfolder import RunSettings


class TrainingStopped(Exception):
    """The run stopped early (a signal, or a loss that was not finite); the message says why and what
    to type next. everywhere: every rank of a job of several stops alike (False: this rank alone)."""

    def __init__(self, message, exit_code, everywhere=True):
        super().__init__(message)
        self.exit_code, self.everywhere = exit_code, everywhere


def say_on_stderr(message, prog="scratchvae"):
    """One line on stderr, above the progress bar if there is one (how a Trainer says it heard a signal)."""
    from tqdm import tqdm
    tqdm.write(f"{prog}: {message}", file=sys.stderr)


def library_command(options):
    """How a message names the command that does something next, for a Trainer run from Python: the
    tool in bin/ that would (the command line passes its own, cli.command)."""
    return shlex.join(["train-scratch", *(str(o) for o in options)])


def lower_lr(lr):
    """The learning rate a diverged run is told to try: half its own, and no more than the default."""
    return min(lr / 2, RunSettings.default("lr"))


class Advice:
    """The next commands for the run in `folder` with `settings`; command(options) makes the shell line.
    diverged: run.json's record of a divergence at the run's learning rate ({"step", "what", "lr"}), or None."""

    def __init__(self, settings, folder, command=library_command, diverged=None):
        self.settings, self.folder, self.command, self.diverged = settings, folder, command, diverged

    def lower(self):
        """['--lr', a lower one] when the run diverged at the learning rate it has, else []."""
        return ["--lr", lower_lr(self.settings.lr)] if self.diverged else []

    def resume_again(self):
        """The command that resumes this run (at a lower learning rate when it diverged at this one)."""
        return self.command(["--resume", "--out", self.settings.out, *self.lower()])

    def start_again(self, **changes):
        """The command that starts this run anew, with `changes` to its settings (and at a lower learning rate
        when it diverged at this one)."""
        lower = {"lr": lower_lr(self.settings.lr)} if self.diverged else {}
        return self.command(self.settings.as_options(**lower, **changes))

    def newest(self):
        """'the newest checkpoint is PATH', or that there is none yet: what a message that stops the run says."""
        good = self.folder.checkpoints()
        return f"the newest checkpoint is {good[-1][1]}" if good else "there is no checkpoint yet"

    def nothing_to_resume(self):
        """The error for --resume on a folder without a checkpoint, saying what to type instead."""
        s = self.settings
        if not self.folder.leftovers():
            return FileNotFoundError(f"{s.out} holds no run to resume (no checkpoint in "
                                     f"{self.folder.checkpoint_folder})")
        rows = self.folder.read_log()
        at = f" (step {rows[-1]['step']})" if rows else ""
        if self.diverged:
            d = self.diverged
            return FileNotFoundError(f"{s.out} holds a run that stopped before its first checkpoint: {d['what']} at "
                                     f"step {d['step']} with --lr {s.lr:g}, so there is nothing to resume; start it "
                                     f"again with a lower learning rate: {self.start_again()}")
        return FileNotFoundError(f"{s.out} holds a run that stopped before its first checkpoint{at}, so there is "
                                 f"nothing to resume; start it again with: {self.start_again()}")

    def diverged_at(self, what, step, everywhere=True):
        """TrainingStopped for numbers that are no longer finite (`what`, first seen at `step`), naming the newest
        checkpoint (every checkpoint was checked finite before it was written) and what to type next, at a lower
        learning rate. (The trainer records the divergence, self.diverged, in run.json.)"""
        self.diverged = {"step": step, "what": what, "lr": float(self.settings.lr)}
        what = f"{what} at step {step}"
        good = self.folder.checkpoints()
        if not good:
            return TrainingStopped(f"{what}; stopping. No checkpoint was written before it; start again with a "
                                   f"lower learning rate: {self.start_again()}", 3, everywhere)
        return TrainingStopped(f"{what}; stopping. Last good checkpoint: {good[-1][1]} (step {good[-1][0]}); "
                               f"resume from it with a lower learning rate: {self.resume_again()}", 3, everywhere)

    def stopped_by(self, name, signum, step, path):
        """TrainingStopped after a signal's checkpoint, at `path`."""
        return TrainingStopped(f"stopped by {name} after step {step}; checkpoint {path}. Resume with: "
                               f"{self.resume_again()}", 128 + signum)

    def stopped_at_once(self, name, signum, step, behind, everywhere):
        """TrainingStopped for a second signal, during `step`: the newest checkpoint (behind(its step): a clause
        when the pictures do not show it) and the command that resumes, or that there is none."""
        good = self.folder.checkpoints()
        if good:
            return TrainingStopped(f"stopped at once by a second {name} during step {step}; the newest checkpoint is "
                                   f"{good[-1][1]}{behind(good[-1][0])}. Resume with: {self.resume_again()}",
                                   128 + signum, everywhere)
        return TrainingStopped(f"stopped at once by a second {name} during step {step}, before the first checkpoint, "
                               f"so there is nothing to resume; start again with: {self.start_again()}", 128 + signum,
                               everywhere)

    def out_of_memory(self, e, step, everywhere):
        """TrainingStopped (exit status 2) for a step that ran out of memory: what to ask for instead."""
        s = self.settings
        what = f"out of memory in step {step} at --batch-size {s.batch_size} ({' '.join(str(e).split())})"
        if not self.folder.checkpoints():
            return TrainingStopped(f"{what}; there is no checkpoint yet; start again with a smaller batch: "
                                   f"{self.start_again(batch_size=max(1, s.batch_size // 2))}", 2, everywhere)
        return TrainingStopped(f"{what}; {self.newest()}. A run keeps its batch size: resume it where there is more "
                               f"memory ({self.resume_again()}), or start a new run with a smaller --batch-size and "
                               "another --out", 2, everywhere)
