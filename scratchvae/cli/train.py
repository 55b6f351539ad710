"""bin/train-scratch: train the World Models vision VAE, from nothing to pictures and checkpoints."""
import os
import sys
from dataclasses import fields

from . import OneLineParser, fraction, non_negative_float, positive_float, positive_int, run
from ..backend import resolve_device
from ..train import RunSettings, Trainer, TrainingStopped

D = RunSettings.default

DEFAULT_DATA = os.path.join("data", "carracing-default")
DEFAULT_EPISODES, DEFAULT_STEPS_PER_EPISODE, DEFAULT_TRAIN_STEPS = 16, 300, 150


def _setting_adder(p):
    """add(name, type, what, *old_flags): an option --name-with-dashes for RunSettings.name, its default
    and the default shown in --help both read from RunSettings."""
    def add(name, type, what, *old_flags):
        p.add_argument("--" + name.replace("_", "-"), *old_flags, dest=name, type=type, default=D(name),
                       help=f"{what} (default {D(name)})")
    return add


def parser():
    p = OneLineParser(
        prog="train-scratch",
        description="Train the World Models vision VAE on CarRacing frames. With no arguments: collect a small "
                    f"dataset into {DEFAULT_DATA} (if it is not there yet), train {DEFAULT_TRAIN_STEPS} steps on "
                    "the CPU, and say where everything went.")
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu",
                   help="cpu (NumPy), gpu (CuPy), or auto: the GPU when CuPy and a GPU are there (default cpu)")
    p.add_argument("--data", help=f"folder of episode files from collect-rollouts (default: {DEFAULT_DATA}, "
                                  "collected first if missing)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=positive_int, help=f"total optimizer steps (default {DEFAULT_TRAIN_STEPS})")
    g.add_argument("--epochs", type=positive_int, help="total passes over the training frames (instead of --steps)")
    setting = _setting_adder(p)
    setting("batch_size", positive_int, "images per step")
    setting("lr", positive_float, "Adam's learning rate")
    setting("latent_dim", positive_int, "latent dimensions", "--latent")
    setting("kl_tolerance", non_negative_float, "free bits: each image's KL is floored at this × latent-dim")
    setting("beta", non_negative_float, "weight of the KL term")
    setting("seed", int, "seed for weights, noise, batch order and the held-out split")
    p.add_argument("--dtype", choices=("float32", "float64"), default=D("dtype"), help=f"default {D('dtype')}")
    setting("heldout", fraction, "fraction of episodes held out")
    p.add_argument("--out", default=os.path.join("runs", "default"), help="run folder (default runs/default)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    setting("log_every", positive_int, "steps between log rows")
    setting("eval_every", positive_int, "steps between held-out evaluations")
    setting("checkpoint_every", positive_int, "steps between checkpoints and pictures")
    setting("keep", positive_int, "checkpoints to keep")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    device = resolve_device(args.device)
    if args.device == "auto":
        print(f"train-scratch: --device auto chose {device}")
    data = args.data
    if data is None:
        data = DEFAULT_DATA
        if not (os.path.isdir(data) and any(f.endswith(".npz") for f in os.listdir(data))):
            from ..data.rollouts import collect
            print(f"train-scratch: no data given; collecting {DEFAULT_EPISODES} CarRacing episodes of "
                  f"{DEFAULT_STEPS_PER_EPISODE} steps into {data}")
            collect(data, DEFAULT_EPISODES, DEFAULT_STEPS_PER_EPISODE, workers=os.cpu_count() or 1,
                    progress=not args.quiet)
    if args.steps is None and args.epochs is None:
        args.steps = DEFAULT_TRAIN_STEPS
    given = {**vars(args), "data": data, "device": device}
    settings = RunSettings(**{f.name: given[f.name] for f in fields(RunSettings) if f.name in given})
    trainer = Trainer(settings, resume=args.resume, progress=not args.quiet)
    print(f"train-scratch: {trainer.model} on {trainer.n_train} training frames "
          f"({trainer.run_json['heldout_frames']} held out) from {data}; steps {trainer.step} → {trainer.steps}")
    try:
        trainer.run()
    except TrainingStopped as e:
        print(f"train-scratch: {e}", file=sys.stderr)
        return e.exit_code
    rows = trainer.read_log()
    last = rows[-1] if rows else {}
    mse = last.get("heldout_mse")
    print(f"train-scratch: done at step {trainer.step}: loss {last.get('loss', float('nan')):.2f}, "
          f"recon {last.get('recon', float('nan')):.2f}, KL {last.get('kl', float('nan')):.2f}"
          + (f", held-out MSE per pixel {mse:.5f}" if mse is not None else ""))
    print(f"train-scratch: wrote {args.out}/: checkpoints/, log.jsonl, reconstructions.png, samples.png, "
          "traversal.png, loss.png")
    return 0


def entry():
    return run("train-scratch", main)
