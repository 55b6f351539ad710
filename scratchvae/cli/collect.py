"""bin/collect-rollouts: run CarRacing episodes in parallel and write one file per episode."""
import os

from . import OneLineParser, positive_int, run
from ..data.preprocess import parse_size
from ..data.rollouts import POLICIES, collect


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
    p.add_argument("--seed", type=int, default=0, help="seed of episode 0 (default 0)")
    p.add_argument("--size", type=parse_size, default=(64, 64), help="frame size HEIGHTxWIDTH (default 64x64)")
    p.add_argument("--out", default="data/carracing", help="output folder (default data/carracing)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    s = collect(args.out, args.episodes, args.steps, args.workers, args.policy, args.seed, args.size,
                progress=not args.quiet)
    fps = s["frames"] / s["seconds"] if s["seconds"] > 0 else 0.0
    print(f"{s['collected']} episodes collected ({s['skipped']} already there), {s['frames']} frames, "
          f"{s['bytes'] / 1e6:.1f} MB, {fps:.0f} frames/s, in {args.out}")
    return 0


def entry():
    return run("collect-rollouts", main)
