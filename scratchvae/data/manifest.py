"""A data folder's manifest: how each of its episodes was collected, checked before collecting more.

    DIR/manifest.json
    {"format": 1, "env": "CarRacing-v3",
     "episodes": {"episode_000000.npz": {"seed": 0, "policy": "brownian", "max_steps": 500,
                                         "size": [64, 64], "frames": 500}, …}}

collect-rollouts writes it (atomically, as episodes arrive and at the end) and checks it before
adding episodes to a folder: episode i must have been collected with seed SEED + i and with the
policy, step limit and frame size asked for now, so that "episode i uses seed SEED + i" holds for
the whole folder. Each episode file carries the same facts itself (episodes.episode_facts): a
manifest that lags behind its folder (a collection killed between an episode and the manifest's
next write), or a folder that has none, is completed from the files.
"""
import glob
import json
import os

from ..files.atomic import atomic_write
from .episodes import DataError, episode_facts, episode_name

MANIFEST = "manifest.json"
FORMAT = 1
CHECKED = ("seed", "policy", "max_steps", "size")       # what a collection asks for; "frames" is what came


def read_manifest(folder):
    """{episode file name: facts} from the folder's manifest ({} when it has none)."""
    path = os.path.join(folder, MANIFEST)
    try:
        with open(path) as f:
            d = json.load(f)
        episodes = d["episodes"]
        if d.get("format") != FORMAT or not isinstance(episodes, dict):
            raise ValueError(f"format {d.get('format')}, expected {FORMAT}")
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable manifest ({type(e).__name__}: {e}); move it away and collect "
                        "again: it is rebuilt from the episode files") from None
    return episodes


def complete(folder, records):
    """The records of the episode files now in the folder: those the manifest has, and the facts of
    the others read from the files themselves (files that cannot be read are left out)."""
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "episode_*.npz"))):
        name = os.path.basename(path)
        if name in records:
            out[name] = records[name]
            continue
        try:
            out[name] = episode_facts(path)
        except DataError:
            continue
    return out


def write_manifest(folder, records, env):
    with atomic_write(os.path.join(folder, MANIFEST), "w") as f:
        json.dump({"format": FORMAT, "env": env, "episodes": dict(sorted(records.items()))}, f, indent=1)


def asked(i, seed, policy, max_steps, size):
    """The facts episode i must have in a collection asked for with these options."""
    return {"seed": seed + i, "policy": policy, "max_steps": max_steps, "size": [int(size[0]), int(size[1])]}


def check_request(folder, records, episodes, seed, policy, max_steps, size):
    """Every episode among 0 … episodes − 1 already in the folder was collected as this request would
    collect it; else a DataError naming the first that was not, and how many."""
    wrong = []
    for i in range(episodes):
        have = records.get(episode_name(i))
        if have is None:
            continue
        want = asked(i, seed, policy, max_steps, size)
        differ = [k for k in CHECKED if have.get(k) is not None and have[k] != want[k]]
        if differ:
            wrong.append((episode_name(i), have, want, differ))
    if wrong:
        name, have, want, differ = wrong[0]
        said = ", ".join(f"{_option(k)} {_shown(k, have[k])} (asked: {_shown(k, want[k])})" for k in differ)
        raise DataError(f"{folder} holds {len(wrong)} episode(s) collected with other options, first {name}: "
                        f"{said}. Episode i of a folder uses seed SEED + i with one policy, step limit and "
                        "size: give the folder's own options (see its manifest.json), or another --out")


def _option(key):
    return {"max_steps": "step limit"}.get(key, key)


def _shown(key, value):
    return f"{value[0]}x{value[1]}" if key == "size" else str(value)
