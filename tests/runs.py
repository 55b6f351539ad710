"""What the tests of the tools share: tiny episodes to train on, and the tools run as a user runs them."""
import base64
import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
from PIL import Image

from scratchvae.data.episodes import episode_name, write_episode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# a run the tools' tests can afford: small batches, short intervals, and a small model (the World Models
# architecture at widths 4–8, 9,859 parameters against 4.3 million: what is tested is the tool, not the size)
SMALL = dict(latent_dim=8, channels="4,8,8,8", dense_size=16)
FAST = ["--batch-size", "8", "--log-every", "2", "--eval-every", "2", "--checkpoint-every", "3", "--quiet",
        "--latent-dim", "8", "--channels", "4,8,8,8", "--dense-size", "16"]


def tiny_data(folder, episodes=4, frames=12, size=(64, 64), seed=0, policy="test"):
    """Episodes of a grey 'track' stripe moving across a green field: structure the VAE can learn."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    for e in range(episodes):
        obs = np.zeros((frames, h, w, 3), np.uint8)
        obs[..., 1] = 180
        for t in range(frames):
            c = (3 * t + 7 * e) % (w - 10)
            obs[t, :, c:c + 10] = 110
        obs = np.clip(obs.astype(int) + rng.integers(-8, 8, obs.shape), 0, 255).astype(np.uint8)
        write_episode(os.path.join(folder, episode_name(e)), obs, rng.uniform(size=(frames, 3)),
                      rng.normal(size=frames), np.arange(frames) == frames - 1, seed=e, policy=policy)
    return str(folder)


def trained_run(tmp_path_factory, data, steps):
    """A run folder (its path) of the tools' tiny model trained `steps` steps on data: a module's trained model."""
    from scratchvae.cli.train import main as train_main
    out = str(tmp_path_factory.mktemp("run") / "run")
    assert train_main(["--data", data, "--steps", str(steps), "--out", out, *FAST]) == 0
    return out


def one_line(capsys):
    """The one line a tool said on stderr (its error, or its warning), with no traceback."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def start(*args):
    """bin/train-scratch as a user starts it from the project's folder, in the background."""
    return subprocess.Popen([sys.executable, os.path.join("bin", "train-scratch"), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_a_row(proc, out):
    """Wait until the run has written a log row (it is past its start), and is still running."""
    log = os.path.join(out, "log.jsonl")
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (os.path.exists(log) and os.path.getsize(log) > 0):
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()


def said_command(text, after):
    """The command a message printed after `after` (to the end of its line)."""
    line = next(line for line in text.splitlines() if after in line)
    return line.split(after, 1)[1].strip()


def run_as_printed(command, *more):
    """Run a printed command as a user would paste it into a new shell: from the project's folder, with no
    virtual environment activated (none on the PATH)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/bin:/bin"
    return subprocess.run(" ".join([command, *more]), shell=True, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "bin", "train-scratch"), *args],
                          capture_output=True, text=True, env=env, timeout=300)


def files_and_times(folder):
    """{path: modification time} of every file in a run folder but its lock (which each writer takes)."""
    return {os.path.join(d, f): os.path.getmtime(os.path.join(d, f)) for d, _, names in os.walk(folder)
            for f in names if f != ".lock"}


def params_equal(a, b):
    return all(np.array_equal(a.model.params[k], b.model.params[k]) for k in a.model.params)


# ---- bin/explore, as its tests and the browser's test drive it ----------------------------------------
def pixels(url):
    """uint8 (H, W, 3) of a PNG data: URL."""
    head, b64 = url.split(",", 1)
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def start_explore(*args):
    """bin/explore as a user starts it, in the background; (process, its URL) once it says where it is."""
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "bin", "explore"), "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        found = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
        if found:
            return proc, found.group(1)
    raise AssertionError(f"explore did not start: {proc.communicate()}")


def request(url, body=None, method=None, headers=None):
    """(status, headers, body text) of one request; a refusal is an answer here, not an exception."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()
