"""bin/collect-rollouts: run CarRacing episodes in parallel and write one file per episode."""
import argparse
import contextlib
import os
import sys

from . import Interrupted, OneLineParser, command, non_negative_int, positive_int, one_voice, run, together
from ..run import distributed
from ..data.episodes import DataError, frame_size
from ..data.manifest import complete, write_manifest
from ..data.preprocess import parse_size
from ..data.rollouts import (ENV_ID, POLICIES, check_options, collect, jobs_for, missing_episodes, new_summary,
                             open_folder, require_gymnasium, run_jobs)
from ..files.lock import locked
from ..model.vae import DEFAULT_ENCODER, encoder_min_size


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
                    "regenerated; episodes already in OUT are skipped, so an interrupted run can simply be re-run. "
                    "Under an MPI launcher (mpiexec -n N collect-rollouts …) episode i is collected by process i mod N, "
                    "each with its own --workers.")
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
    world = distributed.world()                         # the ranks, under mpiexec; else this process
    one_voice(world)
    have = frame_size(args.out) if os.path.isdir(args.out) else None
    if have is not None and have != tuple(args.size):
        raise DataError(f"{args.out} holds {have[0]}x{have[1]} frames; --size {args.size[0]}x{args.size[1]} would "
                        "mix sizes in one folder (choose another --out)")
    again = command("collect-rollouts")(sys.argv[1:] if argv is None else argv)
    try:
        if world.size == 1:
            s = collect(args.out, args.episodes, args.steps, args.workers, args.policy, args.seed, args.size,
                        progress=not args.quiet)
        else:
            s = collect_on_ranks(world, args)
            if world.rank != 0:
                return 0
    except KeyboardInterrupt:
        raise Interrupted(kept(args.out, args.episodes, again)) from None
    if not s["collected"]:
        print(f"collect-rollouts: nothing to collect: all {args.episodes} episodes are already in {args.out}")
        return 0
    fps = s["frames"] / s["seconds"] if s["seconds"] > 0 else 0.0
    on = f" on {world.size} processes" if world.size > 1 else ""
    print(f"{s['collected']} episodes collected ({s['skipped']} already there){on}, {s['frames']} frames, "
          f"{s['bytes'] / 1e6:.1f} MB, {fps:.0f} frames/s, in {args.out}")
    return 0


def kept(out, episodes, again):
    """What an interrupted collection leaves, and the command that collects the rest (it skips what is there)."""
    have = episodes - len(missing_episodes(out, episodes))
    return (f"{have} of the {episodes} episodes are in {out}, kept (an episode cut short is not written); the same "
            f"command collects the other {episodes - have}: {again}")


def collect_on_ranks(world, args):
    """collect() shared out by rank: rank 0 holds the folder (its lock) and checks what is in it, as one process
    does; episode i is collected by rank i mod N; at the end rank 0 writes the one manifest (from the episode
    files, which carry their own facts). Returns the summary of all ranks together (on rank 0)."""
    with contextlib.ExitStack() as held:
        def check():                                    # rank 0: the folder's records (the others keep none)
            check_options(args.out, args.episodes, args.steps, args.workers, args.policy, args.seed)
            records = {}
            if world.rank == 0:
                held.enter_context(locked(args.out, "collect-rollouts"))
                records = open_folder(args.out, args.episodes, args.steps, args.policy, args.seed, args.size)[1]
            require_gymnasium()
            return records
        records = together(world, check)
        todo = missing_episodes(args.out, args.episodes)
        mine = [i for i in todo if i % world.size == world.rank]
        summary = new_summary(args.episodes, todo)
        if mine:
            run_jobs(jobs_for(mine, args.steps, args.policy, args.seed, args.size, args.out), args.workers, args.out,
                     records, summary, progress=not args.quiet and world.rank == 0, manifest=world.rank == 0)
        # the ranks finish at their own pace: only a rank's end is watched, not how long the others take
        parts = world.gather(summary, "the other ranks' episodes", timeout=None)
        if world.rank == 0:                             # its own records, and the other ranks' from their files
            write_manifest(args.out, complete(args.out, records), ENV_ID)
    total = dict(parts[0])
    for key in ("collected", "frames", "bytes"):
        total[key] = sum(p[key] for p in parts)
    total["seconds"] = max(p["seconds"] for p in parts)
    return total


def entry():
    return run("collect-rollouts", main)
