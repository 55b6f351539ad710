"""Collecting CarRacing episodes in parallel worker processes.

Each episode i is run from its own seed S + i (the environment's reset seed and
the policy's generator both come from it), so any episode can be regenerated
exactly. Workers write their episodes themselves, atomically; a re-run skips the
episodes already on disk, after checking (manifest.py) that they were collected
with the options asked for now. One collection at a time writes into a folder (its lock).
"""
import multiprocessing as mp
import os
import time

import numpy as np

from ..files.extras import MissingPackage
from ..files.atomic import remove_temporaries
from ..files.lock import locked
from ..files.progress import bar as progress_bar
from .episodes import episode_name, write_episode
from .manifest import asked, check_request, complete, read_manifest, write_manifest
from .preprocess import preprocess

ENV_ID = "CarRacing-v3"
MANIFEST_EVERY = 2.0                    # seconds between the manifest's rewrites while collecting


def require_gymnasium():
    """Import gymnasium and Box2D (CarRacing's physics), or say in one line how to install them."""
    try:
        import Box2D  # noqa: F401
        import gymnasium  # noqa: F401
    except ImportError as e:
        raise MissingPackage(f"collecting CarRacing frames needs gymnasium[box2d], which is not installed ({e}): "
                             "pip install -e '.[collect]' in the project, or pip install 'gymnasium[box2d]'") from None


def make_env():
    """A headless CarRacing (no window: SDL's dummy video driver)."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    require_gymnasium()
    import gymnasium as gym
    return gym.make(ENV_ID)


class Brownian:
    """a(t+1) = clip(a(t) + √(1/50)·N(0, 1)) within the action space; a(0) uniform in it."""

    def __init__(self, space, rng):
        self.low, self.high, self.rng = space.low, space.high, rng
        self.a = rng.uniform(self.low, self.high).astype(np.float32)

    def __call__(self):
        a = self.a
        self.a = np.clip(a + np.sqrt(1 / 50) * self.rng.standard_normal(a.shape), self.low, self.high).astype(np.float32)
        return a


class Uniform:
    """Independent uniform samples of the action space."""

    def __init__(self, space, rng):
        self.low, self.high, self.rng = space.low, space.high, rng

    def __call__(self):
        return self.rng.uniform(self.low, self.high).astype(np.float32)


POLICY = {"brownian": Brownian, "random": Uniform}     # --policy → the class that draws the actions
POLICIES = tuple(POLICY)


def check_policy(policy):
    if policy not in POLICY:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")


def run_episode(seed, steps, policy="brownian", size=(64, 64), env=None):
    """One episode of at most `steps` steps: dict of obs (T, H, W, 3) uint8, actions, rewards, terminated and
    truncated (an episode that `steps` cut is truncated at its last step: it did not end there by itself)."""
    check_policy(policy)
    own = env is None
    env = env or make_env()
    try:
        rng = np.random.default_rng(seed)
        act = POLICY[policy](env.action_space, rng)
        frame, _ = env.reset(seed=int(seed))
        obs, actions, rewards, ended, cut = [], [], [], [], []
        for _ in range(steps):
            a = act()
            obs.append(preprocess(frame, size))
            frame, r, terminated, truncated, _ = env.step(a)
            actions.append(a)
            rewards.append(r)
            ended.append(bool(terminated))
            cut.append(bool(truncated) and not terminated)
            if terminated or truncated:
                break
        if not (ended[-1] or cut[-1]):                  # `steps` reached: the episode is cut here
            cut[-1] = True
    finally:
        if own:
            env.close()
    return dict(obs=np.stack(obs), actions=np.stack(actions), rewards=np.asarray(rewards, np.float32),
                terminated=np.asarray(ended, bool), truncated=np.asarray(cut, bool))


def _collect_one(job):
    """Worker: run and write one episode; returns (index, facts for the manifest, bytes)."""
    index, seed, steps, policy, size, out = job
    ep = run_episode(seed, steps, policy, size)
    path = os.path.join(out, episode_name(index))
    write_episode(path, **ep, seed=seed, policy=policy, max_steps=steps)
    return index, {**asked(0, seed, policy, steps, size), "frames": len(ep["obs"])}, os.path.getsize(path)


def missing_episodes(out, episodes):
    """The episode numbers among 0..episodes−1 that have no file in `out` yet."""
    return [i for i in range(episodes) if not os.path.exists(os.path.join(out, episode_name(i)))]


def check_options(out, episodes, steps, workers, policy, seed):
    """The options of a collection, each in its range (a ValueError naming the first that is not)."""
    if episodes < 1 or steps < 1 or workers < 1:
        raise ValueError(f"episodes, steps and workers must be at least 1, got {episodes}, {steps}, {workers}")
    if seed < 0:
        raise ValueError(f"seed must be at least 0, got {seed}")
    check_policy(policy)
    if os.path.exists(out) and not os.path.isdir(out):
        raise NotADirectoryError(f"--out {out} is a file; expected a folder for episode files")


def open_folder(out, episodes, steps, policy, seed, size):
    """With the folder's lock held: a killed collection's temporary files removed, and the episodes already
    there checked against what is asked for now. Returns (the manifest's records, the folder's records)."""
    remove_temporaries(out)                         # a killed collection's episode or manifest
    listed = read_manifest(out)
    records = complete(out, listed)
    check_request(out, records, episodes, seed, policy, steps, size)
    return listed, records


def new_summary(episodes, todo):
    return dict(requested=episodes, skipped=episodes - len(todo), collected=0, frames=0, bytes=0, seconds=0.0)


def collect(out, episodes, steps, workers=1, policy="brownian", seed=0, size=(64, 64), progress=True):
    """Collect the episodes 0..episodes−1 that are not in `out` yet, after checking that those already
    there were collected with these options. Returns a summary dict (collected 0 when every one is
    there already: nothing to do)."""
    check_options(out, episodes, steps, workers, policy, seed)
    with locked(out, "collect-rollouts"):
        listed, records = open_folder(out, episodes, steps, policy, seed, size)
        todo = missing_episodes(out, episodes)
        summary = new_summary(episodes, todo)
        if not todo:
            if records != listed:
                write_manifest(out, records, ENV_ID)
            return summary
        require_gymnasium()                         # here, not in each worker: one line, before any work
        try:
            run_jobs(jobs_for(todo, steps, policy, seed, size, out), workers, out, records, summary, progress)
        finally:
            write_manifest(out, records, ENV_ID)
        return summary


def jobs_for(todo, steps, policy, seed, size, out):
    """One job per episode number: (index, its seed, steps, policy, size, folder)."""
    return [(i, seed + i, steps, policy, tuple(size), out) for i in todo]


def run_jobs(jobs, workers, out, records, summary, progress, manifest=True):
    """Run the jobs in a pool, filling records (written to the manifest every MANIFEST_EVERY seconds, when
    `manifest`: the one process that writes it) and the summary as episodes arrive."""
    t0 = last = time.perf_counter()
    bar = progress_bar(len(jobs), "collecting", "ep", enabled=progress)
    pool = None
    try:
        if workers == 1 or len(jobs) == 1:
            results = map(_collect_one, jobs)
        else:
            pool = mp.get_context("spawn").Pool(min(workers, len(jobs)))
            results = pool.imap_unordered(_collect_one, jobs)
        for index, facts, nbytes in results:
            records[episode_name(index)] = facts
            summary["collected"] += 1
            summary["frames"] += facts["frames"]
            summary["bytes"] += nbytes
            bar.update(1)
            bar.set_postfix(frames=summary["frames"], fps=f"{summary['frames'] / (time.perf_counter() - t0):.0f}")
            if manifest and time.perf_counter() - last >= MANIFEST_EVERY:
                write_manifest(out, records, ENV_ID)
                last = time.perf_counter()
        if pool:
            pool.close()
            pool.join()
    except BaseException:
        if pool:
            pool.terminate()
            pool.join()
        remove_temporaries(out)
        raise
    finally:
        bar.close()
    summary["seconds"] = time.perf_counter() - t0
