"""bin/train-scratch: train the World Models vision VAE, from nothing to pictures and checkpoints."""
import argparse
import contextlib
import os
import sys
from dataclasses import fields

from . import (Interrupted, OneLineParser, channel_list, command, fraction, non_negative_float, non_negative_int,
               positive_float, positive_int, one_voice, run, together, under_mpiexec)
from ..run import distributed
from ..ops.devices import resolve_device
from ..run.runfolder import CAN_CHANGE, PRECISIONS, RunFolder, RunSettings
from ..run.advice import TrainingStopped, lower_lr, say_on_stderr
from ..run.trainer import Trainer

DEFAULT_DATA = os.path.join("data", "carracing-default")
DEFAULT_EPISODES, DEFAULT_STEPS_PER_EPISODE, DEFAULT_TRAIN_STEPS = 16, 300, 150


def _setting_adder(p):
    """add(name, type, what, *old_flags): an option --name-with-dashes for RunSettings.name, its default
    and the default shown in --help both read from RunSettings."""
    def add(name, type, what, *old_flags):
        default = RunSettings.default(name)
        p.add_argument("--" + name.replace("_", "-"), *old_flags, dest=name, type=type, default=default,
                       help=f"{what} (default {default})")
    return add


def parser():
    p = OneLineParser(
        prog="train-scratch",
        description="Train the World Models vision VAE on CarRacing frames. With no arguments: collect a small "
                    f"dataset into {DEFAULT_DATA} (what is not there yet), train {DEFAULT_TRAIN_STEPS} steps on "
                    "the CPU into runs/default, and say where everything went; run again, it continues that run. "
                    "Under an MPI launcher (mpiexec -n N train-scratch …) N processes train one model, each on its "
                    "share of every batch (--device gpu: a GPU each): in float64 the same results as one process, to rounding; "
                    "in float32 as close as summing each batch in another order comes.")
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu",
                   help="cpu (NumPy), gpu (CuPy), or auto: the GPU when CuPy and a GPU are there (default cpu)")
    p.add_argument("--precision", choices=PRECISIONS, default=RunSettings.default("precision"),
                   help="fp32: exact float32 products (the default); tf32: on the GPU, float32 products round their "
                        "inputs to TF32 on the tensor cores, as PyTorch's default convolutions do (faster, about 1e-3 "
                        "relative error per product); fp16: mixed precision, float16 layers on float32 weights, "
                        "the loss, the latent and Adam in float32, the backward scaled by a dynamic loss scale "
                        "(docs/precision.md; on the GPU each step reads one number back, so it is not recorded; on "
                        "the CPU it is slower than fp32, as NumPy has no fast float16)")
    p.add_argument("--tf32", action="store_true", help="the same as --precision tf32")
    p.add_argument("--no-graph", dest="no_graph", action="store_true",
                   help="GPU: launch each step kernel by kernel instead of replaying it as one recorded CUDA graph "
                        "(the same numbers, slower at small batches; default: recorded)")
    p.add_argument("--data", help=f"folder of episode files from collect-rollouts (default: {DEFAULT_DATA}, "
                                  "collected first, or finished, if incomplete)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=positive_int, help=f"total optimizer steps (default {DEFAULT_TRAIN_STEPS})")
    g.add_argument("--epochs", type=positive_int, help="total passes over the training frames (instead of --steps)")
    setting = _setting_adder(p)
    setting("batch_size", positive_int, "images per step")
    setting("lr", positive_float, "Adam's learning rate")
    setting("latent_dim", positive_int, "latent dimensions", "--latent")
    setting("channels", channel_list, "output channels of the encoder's four convolutions, the decoder's first "
            "three taking them in reverse (a smaller model: 8,16,32,64)")
    setting("dense_size", positive_int, "width of the decoder's dense layer (the channels of the image it starts from)")
    setting("kl_tolerance", non_negative_float, "free bits: each image's KL is floored at this × latent-dim")
    setting("beta", non_negative_float, "weight of the KL term")
    setting("seed", non_negative_int, "seed for weights, noise, batch order and the held-out split")
    p.add_argument("--dtype", choices=("float32", "float64"), default=RunSettings.default("dtype"),
                   help=f"default {RunSettings.default('dtype')}")
    setting("readers", non_negative_int, "processes that read each batch's frames from the episode files "
            "together, while the step before runs (0: one thread of this process, 200,000 to 250,000 frames a second "
            "on one core; "
            "more where a fast GPU wants more: bench/bench_loader.py measures it)")
    setting("heldout", fraction, "fraction of episodes held out, rounded to whole episodes and at least one when "
            "there are two or more (with 2 to 14 episodes that is more than a tenth: the start says the share)")
    p.add_argument("--out", default=os.path.join("runs", "default"), help="run folder (default runs/default)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its newest readable checkpoint, with the settings it was "
                        "started with. Given again, these may change, and the run says so: "
                        + ", ".join("--" + k.replace("_", "-") for k in CAN_CHANGE)
                        + ", and --data when the folder moved (the same episodes). Any option given again with the "
                          "run's own value is accepted and changes nothing; any other change is refused")
    setting("log_every", positive_int, "steps between log rows")
    setting("eval_every", positive_int, "steps between held-out evaluations")
    setting("checkpoint_every", positive_int, "steps between checkpoints and pictures")
    setting("keep", positive_int, "checkpoints to keep (besides the best one)")
    setting("eval_frames", positive_int, "held-out frames the MSE is measured on")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write the log's curves and each checkpoint's pictures as TensorBoard event files in "
                        "the run folder (needs the tensorboard extra; then tensorboard --logdir with the run's parent "
                        "folder compares its runs). Once on, a resume keeps it on (default off)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def explicit_options(argv):
    """The options given on the command line, as {dest: value}, without the defaults."""
    p = parser()
    for action in p._actions:               # (set_defaults cannot do this: it would put SUPPRESS in the result)
        action.default = argparse.SUPPRESS
    return vars(p.parse_args(argv))


def default_data(quiet):
    """The default dataset, collected (or finished: collection is resumable) first when incomplete."""
    from ..data.rollouts import collect, missing_episodes, require_gymnasium
    from ..files.extras import MissingPackage
    missing = missing_episodes(DEFAULT_DATA, DEFAULT_EPISODES)
    if missing:
        try:
            require_gymnasium()
        except MissingPackage as e:
            raise MissingPackage(f"{e}; or give --data with a folder of episodes") from None
        print(f"train-scratch: collecting {len(missing)} of the {DEFAULT_EPISODES} default CarRacing episodes "
              f"({DEFAULT_STEPS_PER_EPISODE} steps each) into {DEFAULT_DATA}")
        try:
            collect(DEFAULT_DATA, DEFAULT_EPISODES, DEFAULT_STEPS_PER_EPISODE, workers=os.cpu_count() or 1,
                    progress=not quiet)
        except KeyboardInterrupt:
            have = DEFAULT_EPISODES - len(missing_episodes(DEFAULT_DATA, DEFAULT_EPISODES))
            raise Interrupted(f"{have} of the {DEFAULT_EPISODES} default episodes are in {DEFAULT_DATA}, kept; the "
                              "same command collects the rest first, then trains") from None
    return DEFAULT_DATA


def settings_for(args, given, folder):
    """(RunSettings, resume, notes): a new run from the options, or the folder's own run with the options
    given again as overrides, and the lines to say once every check has passed. With no --out, a run
    already in the default folder goes on: to its own length if it stopped early, else
    DEFAULT_TRAIN_STEPS further."""
    default_run = not args.resume and "out" not in given and folder.holds_run()
    notes = []
    if args.resume or default_run:
        saved, record = folder.read_settings()
        if default_run:
            step, length = folder.checkpoints()[-1][0], record.get("steps")
            if not {"steps", "epochs"} & given.keys():
                given["steps"] = length if isinstance(length, int) and step < length else step + DEFAULT_TRAIN_STEPS
            notes.append(f"{args.out} holds a run at step {step}; continuing it (give --out for a new run)")
        settings, changes = saved.resumed({k: v for k, v in given.items() if k != "resume"})
        if changes:
            notes.append("resuming with " + ", ".join(said_changes(changes)))
        return settings, True, notes
    data = args.data if args.data is not None else default_data(args.quiet)
    if args.steps is None and args.epochs is None:
        args.steps = DEFAULT_TRAIN_STEPS
    values = {**vars(args), "data": data}
    return RunSettings(**{f.name: values[f.name] for f in fields(RunSettings) if f.name in values}), False, notes


def said_changes(changes):
    """'--lr 0.0005 (was 0.001)' for each change of {name: (old, new)}; a run's length, given as steps or as
    epochs, is one setting: '--epochs 13 (was --steps 55)'."""
    length = {k: v for k, v in changes.items() if k in ("steps", "epochs")}
    said = []
    if length:
        old_key, old = next(((k, o) for k, (o, _) in length.items() if o is not None), (None, None))
        new_key, new = next((k, n) for k, (_, n) in length.items() if n is not None)
        said.append(f"--{new_key} {new} (was {old})" if old_key == new_key else f"--{new_key} {new} (was --{old_key} {old})")
    for k, (old, new) in ((k, v) for k, v in changes.items() if k not in length):
        option = "--" + k.replace("_", "-")
        said.append(f"{option} (was off)" if new is True and old is False else f"{option} {new} (was {old})")
    return said


def main(argv=None):
    args = parser().parse_args(argv)
    given = explicit_options(argv)
    world = distributed.world()                                 # the ranks, under mpiexec; else this process
    one_voice(world)
    args.device = resolve_device(args.device)
    if "device" in given:
        if given["device"] == "auto" and world.rank == 0:
            print(f"train-scratch: --device auto chose {args.device}")
        given["device"] = args.device
    folder = RunFolder(args.out)
    folder.check_place()
    rerun = command("train-scratch")
    if world.size > 1:
        rerun = under_mpiexec(rerun, world.size)
    gpus = []
    if args.device == "gpu" and world.size > 1:                # a GPU per rank, picked before the model is made
        gpus = [f"{world.size} processes, a GPU each; the sums by {world.use_gpu()[1]}"]
    with contextlib.ExitStack() as held:
        def prepare():
            if world.rank == 0:                                 # the folder is this process's from here on
                held.enter_context(folder.lock("train-scratch"))
            settings, resume, notes = settings_for(args, given, folder)
            trainer = Trainer(settings, resume=resume, progress=not args.quiet, command=rerun, world=world,
                              say=lambda message: say_on_stderr(message, "train-scratch"))
            return trainer, notes + gpus
        # rank 0 first (it may collect the default data), then the others, which find it there; a mistake on
        # any rank stops them all, rank 0 saying what it was
        mine = together(world, prepare if world.rank == 0 else lambda: None)
        trainer, notes = together(world, prepare if world.rank != 0 else lambda: mine)
        if world.size > 1:
            seen = world.gather(what_is_trained(trainer), "the ranks' settings", timeout=None)
            together(world, lambda: same_run_everywhere(seen))
        settings = trainer.settings
        if world.rank == 0:
            say_what_goes_on(trainer, notes, world)
        if trainer.step == trainer.steps:
            return 0
        try:
            trainer.train()                                     # (rank 0 holds the folder's lock already)
        except TrainingStopped as e:
            if world.rank == 0 or not e.everywhere:
                print(f"train-scratch: {e}", file=sys.stderr)
            if not e.everywhere:                                # the others wait for this rank: end them
                distributed.abort_others(e.exit_code)
            return e.exit_code
    if world.rank != 0:
        return 0
    rows = trainer.folder.read_log()
    last = rows[-1] if rows else {}
    mse = last.get(trainer.batches.eval_key)
    on = "held-out MSE per pixel" if trainer.batches.eval_split == "heldout" else \
        "MSE per pixel on training frames (nothing held out)"
    print(f"train-scratch: done at step {trainer.step}: loss {last.get('loss', float('nan')):.2f}, "
          f"recon {last.get('recon', float('nan')):.2f}, KL {last.get('kl', float('nan')):.2f}"
          + (f", {on} {mse:.5f}" if mse is not None else ""))
    print(f"train-scratch: wrote {settings.out}/: checkpoints/ (best.npz: the lowest {trainer.batches.eval_key} so far), "
          "log.jsonl, reconstructions.png, samples.png, traversal.png, loss.png"
          + (f"; TensorBoard's event files (tensorboard --logdir {os.path.dirname(os.path.abspath(settings.out))})"
             if settings.tensorboard else ""))
    return 0


def what_is_trained(trainer):
    """What every rank of a job must agree on: the run's settings (the data folder's place aside: each machine
    may keep its own copy), the data's fingerprint, the step it starts from and the step it ends at."""
    return {**{k: v for k, v in trainer.run_json.items() if k not in ("data", "diverged")}, "start": trainer.step,
            "out": os.path.abspath(trainer.settings.out)}


def same_run_everywhere(seen):
    """ValueError naming the first rank whose run is not rank 0's, and each difference."""
    for rank, theirs in enumerate(seen[1:], 1):
        diff = [f"{k} {theirs.get(k)} (rank 0: {seen[0].get(k)})" for k in sorted(seen[0].keys() | theirs.keys())
                if theirs.get(k) != seen[0].get(k)]
        if diff:
            raise ValueError(f"rank {rank} would train another run than rank 0: {'; '.join(diff)}; start every "
                             "process with the same options (and data holding the same episodes)")


def say_what_goes_on(trainer, notes, world):
    """The lines before training: what the options changed, what is replaced, and what is trained."""
    settings = trainer.settings
    for note in notes:                                          # every check has passed: now say what goes on
        print(f"train-scratch: {note}")
    if trainer.diverged:
        d = trainer.diverged
        print(f"train-scratch: {settings.out} stopped at step {d['step']} when {d['what']}, with --lr {settings.lr:g}; "
              f"it resumes with that --lr (give a lower one, e.g. --lr {lower_lr(settings.lr):g}, to change it)")
    if trainer.replaces:
        print(f"train-scratch: {settings.out} held a run that stopped before its first checkpoint; starting "
              f"anew, replacing its {', '.join(trainer.replaces)}")
    if trainer.step == trainer.steps:
        print(f"train-scratch: {settings.out} is already at step {trainer.step} of {trainer.steps}: nothing to "
              "train (give a larger --steps or --epochs to go on)")
        return
    on = f" on {world.size} processes, each with its share of every batch" if world.size > 1 else ""
    print(f"train-scratch: {trainer.model} on {trainer.batches.n_train} training frames ({held_out(trainer)}) from "
          f"{settings.data}; steps {trainer.step} → {trainer.steps}{on}")


def held_out(trainer):
    """'600 held out: 2 of 16 episodes, 12.5% of the frames', or 'nothing held out'."""
    data = trainer.data
    frames, episodes = trainer.run_json["heldout_frames"], len(data.heldout_episodes)
    if not episodes:
        return "nothing held out"
    share = frames / (frames + trainer.batches.n_train)
    said = f"{frames} held out: {episodes} of {len(data.paths)} episodes, {share:.1%} of the frames"
    asked = trainer.settings.heldout
    if share > 1.5 * asked:                                     # whole episodes, at least one
        said += f", more than --heldout {asked:g} asks, as whole episodes are held out, at least one"
    return said


def entry():
    return run("train-scratch", main)
