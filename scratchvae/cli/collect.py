"""bin/collect-rollouts: run CarRacing episodes in parallel and write one file per episode."""
import argparse
import os

from . import OneLineParser, non_negative_int, positive_int, run
from ..data.episodes import DataError, frame_size
from ..data.preprocess import parse_size
from ..data.rollouts import POLICIES, collect
from ..vae import DEFAULT_ENCODER, encoder_min_size


def frame_size_type(text):
    """An argparse type: HxW, e.g. 64x64, each side at least what the model's encoder needs."""
    try:
        h, w = parse_size(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, e.g. 64x64, got {text!r}") from None
    least = encoder_min_size(DEFAULT_ENCODER)
    if h < least or w < least:
        raise argparse.ArgumentTypeError(f"expected each side at least {least} (the model's four stride-2 "
                                         f"convolutions need it), got {h}x{w}")
    return h, w


def parser():
    p = OneLineParser(
        prog="collect-rollouts",
        description="Collect CarRacing-v3 episodes as preprocessed uint8 frames with their actions, rewards and "
                    "done flags, one .npz per episode. Episode i uses seed SEED+i, so any episode can be "
                    "regenerated; episodes already in OUT are skipped, so an interrupted run can simply be re-run.")
    p.add_argument("--episodes", type=positive_int, default=20, help="number of episodes (default 20)")
    p.add_argument("--steps", type=positive_int, default=500, help="steps per episode, at most (default 500)")
    p.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1,
                   help="worker processes (default: one per core)")
    p.add_argument("--policy", choices=POLICIES, default="brownian",
                   help="brownian: actions drift by √(1/50)·N(0,1) a step (default); random: i.i.d. uniform")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of episode 0 (default 0)")
    p.add_argument("--size", type=frame_size_type, default=(64, 64),
                   help="frame size HEIGHTxWIDTH (default 64x64); every episode in a folder has the same")
    p.add_argument("--out", default="data/carracing", help="output folder (default data/carracing)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    have = frame_size(args.out) if os.path.isdir(args.out) else None
    if have is not None and have != tuple(args.size):
        raise DataError(f"{args.out} holds {have[0]}x{have[1]} frames; --size {args.size[0]}x{args.size[1]} would "
                        "mix sizes in one folder (choose another --out)")
    s = collect(args.out, args.episodes, args.steps, args.workers, args.policy, args.seed, args.size,
                progress=not args.quiet)
    if not s["collected"]:
        print(f"collect-rollouts: nothing to collect: all {args.episodes} episodes are already in {args.out}")
        return 0
    fps = s["frames"] / s["seconds"] if s["seconds"] > 0 else 0.0
    print(f"{s['collected']} episodes collected ({s['skipped']} already there), {s['frames']} frames, "
          f"{s['bytes'] / 1e6:.1f} MB, {fps:.0f} frames/s, in {args.out}")
    return 0


def entry():
    return run("collect-rollouts", main)
