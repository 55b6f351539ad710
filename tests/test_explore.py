"""bin/explore: the Explorer's answers against the model's own, the server's refusals of bad requests (it
answers on after each), the start-up refusals, and the page in a real browser (headless Chromium driven by
Selenium): a slider moved changes the decoded picture, read back from the page, to the decoder's own."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import GPU_SKIP_REASON
from runs import FAST, ROOT, pixels, request, start_explore, tiny_data, trained_run

from scratchvae.cli.train import main as train_main
from scratchvae.data.dataset import to_model_input
from scratchvae.use.explorer import BadRequest, Explorer
from scratchvae.model.losses import kl_per_dim
from scratchvae.run.pictures import to_uint8
from scratchvae.run.runfolder import load

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data):
    return trained_run(tmp_path_factory, data, steps=30)


# ---- the Explorer, without the web ------------------------------------------------------------------


def test_explorer_answers_what_the_model_says(run_dir, data, device):
    ck = load(run_dir, device=device)
    m = ck.model
    frames = np.load(os.path.join(data, "episode_000001.npz"))["obs"][:7]
    e = Explorer(m, frames, "seven frames", batch=3)                 # batches of 3: the last one short
    mu, logvar = (np.asarray(a.get() if hasattr(a, "get") else a, np.float64)
                  for a in m.encode(to_model_input(frames, device, m.dtype)))
    kl = np.zeros(m.latent_dim)                                      # the KL per dimension by loops
    for i in range(len(frames)):
        for d in range(m.latent_dim):
            kl[d] += -0.5 * (1 + logvar[i, d] - mu[i, d] ** 2 - np.exp(logvar[i, d])) / len(frames)
    np.testing.assert_allclose(e.kl, kl, rtol=1e-6, atol=1e-9)
    assert sorted(e.order) == list(range(m.latent_dim))
    assert all(kl[a] >= kl[b] for a, b in zip(e.order, e.order[1:]))
    info = e.info()
    assert (info["latent_dim"], info["frames"], info["device"]) == (m.latent_dim, 7, device)

    f = e.frame(4)
    np.testing.assert_allclose(f["mu"], mu[4], rtol=1e-6, atol=1e-7)
    assert np.array_equal(pixels(f["frame"]), frames[4])
    recon = to_uint8(m.decode(m.xp.asarray(mu[4:5].astype(m.dtype))))[0]
    assert np.abs(pixels(f["image"]).astype(int) - recon).max() <= 1      # float32 μ through JSON and back
    assert f["decode_ms"] > 0

    s = e.sample(5)
    z = np.random.default_rng(5).standard_normal(m.latent_dim)
    np.testing.assert_array_equal(s["z"], z)
    assert np.array_equal(pixels(s["image"]), to_uint8(m.decode(m.xp.asarray(z[None].astype(m.dtype))))[0])
    assert not np.array_equal(pixels(s["image"]), pixels(e.sample(6)["image"]))


def test_explorer_without_frames_measures_kl_on_prior_pictures(run_dir):
    m = load(run_dir).model
    e = Explorer(m, None, "none", prior_images=20, batch=8)
    z = np.random.default_rng(0).standard_normal((20, m.latent_dim))
    mu, logvar = m.encode(to_model_input(to_uint8(m.decode(z.astype(m.dtype)))))
    np.testing.assert_allclose(e.kl, kl_per_dim(mu, logvar), rtol=1e-6, atol=1e-9)
    assert e.info()["frames"] == 0 and "prior" in e.info()["kl_source"]
    with pytest.raises(BadRequest, match="no frames were given"):
        e.frame(0)


@pytest.mark.parametrize("z, says", [
    ("0.5", "a list of 8 numbers, got str"),
    ([0.0] * 7, "a list of 8 numbers, got 7"),
    ([0.0] * 7 + ["1"], "got str '1' at 7"),
    ([True] + [0.0] * 7, "got bool True at 0"),
    ([0.0] * 7 + [None], "got NoneType None at 7"),
    ([0.0] * 3 + [float("nan")] + [0.0] * 4, "finite numbers within ±100, got nan at 3"),
    ([0.0] * 7 + [-float("inf")], "got -inf at 7"),
    ([0.0] * 7 + [101], "got 101 at 7"),
    ([0.0] * 7 + ["x" * 1000], "…"),
])
def test_bad_codes_are_refused_in_one_line(run_dir, z, says):
    e = Explorer(load(run_dir).model, None, "", prior_images=4)
    with pytest.raises(BadRequest) as caught:
        e.check_code(z)
    assert says in str(caught.value) and "\n" not in str(caught.value) and len(str(caught.value)) < 120
    assert np.array_equal(e.check_code([0.5] * 7 + [-100]), [0.5] * 7 + [-100])


# ---- the server --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(run_dir, data):
    proc, url = start_explore("--checkpoint", run_dir, "--data", data, "--frames", "20")
    yield url
    proc.send_signal(signal.SIGINT)                                  # Ctrl-C: a clean stop, with every tool's status
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "explore: stopped (Ctrl-C)" in out and err == "", (out, err)


def raw(url, data, half_close=False):
    """Send bytes on a socket of their own; (status, body) of the answer."""
    host, port = url.split("//")[1].strip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def test_server_answers_the_page_and_its_questions(server, run_dir):
    status, headers, page = request(server)
    assert status == 200 and "text/html" in headers["Content-Type"] and 'src="/explore.js"' in page
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for name in ("explore.js", "explore.css"):
        assert request(server + name)[0] == 200
    assert not re.search(r"(src|href)=\"(https?:)?//", page)          # nothing from the network
    info = json.loads(request(server + "api/info")[2])
    assert info["latent_dim"] == 8 and info["frames"] == 20 and info["step"] == 30
    assert sorted(info["order"]) == list(range(8)) and len(info["kl"]) == 8
    frame = json.loads(request(server + "api/frame?i=19")[2])
    assert frame["index"] == 19 and len(frame["mu"]) == 8
    z = [0.25] * 8
    status, _, text = request(server + "api/decode", {"z": z})
    answer = json.loads(text)
    m = load(run_dir).model
    assert status == 200 and answer["server_ms"] >= answer["decode_ms"] > 0
    assert np.array_equal(pixels(answer["image"]), to_uint8(m.decode(np.full((1, 8), 0.25, m.dtype)))[0])
    assert request(server + "api/info", method="HEAD")[0] == 200


BAD = [  # (what is sent, the status, words of the one line that must come back)
    (("api/decode", {"z": [0.0] * 31}), 400, "a list of 8 numbers, got 31"),
    (("api/decode", {"z": ["a"] * 8}), 400, "got str 'a' at 0"),
    (("api/decode", b'{"z": [NaN, 0, 0, 0, 0, 0, 0, 0]}'), 400, "NaN is not a JSON number"),
    (("api/decode", b'{"z": [1e999, 0, 0, 0, 0, 0, 0, 0]}'), 400, "got inf at 0"),
    (("api/decode", b'{"z": [0, 0'), 400, "expected a JSON object"),
    (("api/decode", b"\xff\xfe"), 400, "expected a JSON object"),
    (("api/decode", b"[" * 100000), 413, "at most 16384 bytes, got 100000"),
    (("api/decode", {"code": [0] * 8}), 400, 'expected a JSON object {"z": [numbers]}'),
    (("api/frame?i=20",), 400, "expected i: a whole number 0 … 19, got '20'"),
    (("api/frame?i=-1",), 400, "expected i: a whole number 0 … 19, got '-1'"),
    (("api/frame?i=999999",), 400, "expected i: a whole number 0 … 19, got '999999'"),
    (("api/sample?seed=" + "9" * 4301,), 400, "expected seed: a whole number 0 … 9223372036854775807, got '999"),
    (("api/frame?i=1&i=2",), 400, "one i=N in the query, got 2"),
    (("api/frame",), 400, "one i=N in the query, got 0"),
    (("api/sample?seed=1.5",), 400, "got '1.5'"),
    (("api/nothing",), 404, "no page '/api/nothing'"),
    (("../etc/passwd",), 404, "no page"),
]


@pytest.mark.parametrize("sent, status, says", BAD, ids=[f"{s[0][0]}-{i}" for i, s in enumerate(BAD)])
def test_bad_requests_get_a_4xx_and_one_line(server, sent, status, says):
    got, headers, text = request(server + sent[0], *sent[1:])
    assert got == status and says in text, (got, text)
    assert text.endswith("\n") and text.count("\n") == 1 and "Traceback" not in text
    assert headers["Content-Type"].startswith("text/plain")
    assert request(server + "api/info")[0] == 200                     # and it answers on


def test_a_body_too_large_gets_its_status_not_a_broken_pipe(server):
    """A 10 MB POST is refused (413) as soon as its headers are read; the server reads and drops what the client
    still sends before it closes, so the client, still sending, gets to read the status."""
    import http.client
    port = int(server.split(":")[2].strip("/"))
    for size in (10 << 20, 40 << 20):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("POST", "/api/decode", body=b"0" * size, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 413 and f"at most 16384 bytes, got {size}" in r.read().decode()
        c.close()
    assert request(server + "api/info")[0] == 200


def test_a_burst_of_requests_is_answered_every_one(server):
    """200 decodes sent at once, each on its own connection: every one is answered (the listen queue of
    the standard library's server, 5, reset dozens of them)."""
    import concurrent.futures
    import http.client
    port = int(server.split(":")[2].strip("/"))
    body = json.dumps({"z": [0.5] * 8})
    go = __import__("threading").Barrier(200)

    def one(_):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        go.wait()
        try:
            c.request("POST", "/api/decode", body=body, headers={"Content-Type": "application/json"})
            return c.getresponse().status
        except OSError as e:
            return type(e).__name__
        finally:
            c.close()
    with concurrent.futures.ThreadPoolExecutor(200) as pool:
        answers = list(pool.map(one, range(200)))
    assert answers == [200] * 200, {a: answers.count(a) for a in set(answers)}


def test_wrong_methods_and_hosts_are_refused(server):
    status, headers, text = request(server + "api/decode")
    assert status == 405 and headers["Allow"] == "POST" and "takes POST, got 'GET'" in text
    status, headers, text = request(server + "api/info", b"{}", method="DELETE")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    status, _, text = request(server, headers={"Host": "attacker.example:80"})
    assert status == 403 and "expected Host 127.0.0.1:" in text
    assert request(server.replace("127.0.0.1", "localhost"))[0] == 200


def test_malformed_requests_get_one_line_and_the_server_goes_on(server):
    cases = [
        (b"BREW /api/info HTTP/1.1\r\n\r\n", 405, "takes GET or HEAD, got 'BREW'"),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414, "URI Too Long"),
        (b"GET / / HTTP/1.1\r\n\r\n", 400, "Bad request syntax"),
        (b"GET / HTTP/1.1 more\r\n\r\n", 400, "Bad request version"),
        (b"GET / HTTP/3.0\r\n\r\n", 400, "expected HTTP/1.0 or HTTP/1.1, got 'HTTP/3.0'"),
        (b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", 431, "Too many headers"),
        (b"POST /api/decode HTTP/1.1\r\nContent-Length: 1000000000\r\n\r\n", 413, "at most 16384 bytes"),
        (b"POST /api/decode HTTP/1.1\r\n\r\n", 411, "expected a Content-Length header"),
        (b"POST /api/decode HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"z\"", 400, "ended after 4 of its 100 bytes"),
    ]
    for data, status, says in cases:
        got, text = raw(server, data, half_close=True)
        assert got == status and says in text and text.count("\n") == 1, (data[:40], got, text)
    port = int(server.split(":")[2].strip("/"))
    with socket.create_connection(("127.0.0.1", port)), \
            socket.create_connection(("127.0.0.1", port), timeout=30) as slow:   # one says nothing, one too little
        slow.sendall(b"POST /api/decode HTTP/1.1\r\nContent-Length: 10\r\n\r\n{}")
        start = time.time()
        assert request(server + "api/info")[0] == 200 and time.time() - start < 5     # the others are answered
        answer = b""
        while chunk := slow.recv(65536):                             # to the end: the server closes after it
            answer += chunk
        answer = answer.decode()
        assert answer.startswith("HTTP/1.1 408") and answer.endswith(
            "expected a body of 10 bytes within 10 s; it did not come\n"), answer
        assert 9 < time.time() - start < 20
    assert request(server + "api/info")[0] == 200


def test_start_up_refuses_what_it_cannot_serve(run_dir, tmp_path):
    def refused(*args):
        r = subprocess.run([sys.executable, os.path.join(ROOT, "bin", "explore"), "--port", "0", *args],
                           capture_output=True, text=True, timeout=120)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr and r.stdout == "", r
        return lines[0]

    assert "none.npz: no such checkpoint" in refused("--checkpoint", str(tmp_path / "none.npz"))
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not a zip at all")
    assert refused("--checkpoint", str(tmp_path / "bad.npz")).startswith("explore: error: ")
    big = tiny_data(tmp_path / "big", episodes=1, frames=3, size=(96, 96))
    assert "frames are 96x96, expected 64x64" in refused("--checkpoint", run_dir, "--data", big)
    os.makedirs(tmp_path / "empty")
    assert "no episode" in refused("--checkpoint", run_dir, "--data", str(tmp_path / "empty")).lower()
    assert "port number 0 … 65535, got 70000" in refused("--checkpoint", run_dir, "--port", "70000")
    if GPU_SKIP_REASON is not None:                                     # no GPU here: --device gpu says why
        assert GPU_SKIP_REASON.removeprefix("no usable GPU: ") in refused("--checkpoint", run_dir, "--device", "gpu")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert f"port {port} on 127.0.0.1 is taken" in refused("--checkpoint", run_dir, "--port", port)


def test_without_frames_it_starts_from_a_prior_sample(data, tmp_path):
    copy, out = str(tmp_path / "data"), str(tmp_path / "run")
    shutil.copytree(data, copy)
    assert train_main(["--data", copy, "--steps", "3", "--out", out, *FAST]) == 0
    shutil.rmtree(copy)                                                 # the run's data folder is gone
    proc, url = start_explore("--checkpoint", out)
    try:
        info = json.loads(request(url + "api/info")[2])
        assert info["frames"] == 0 and "prior" in info["kl_source"] and "give --data" in info["source"]
        status, _, text = request(url + "api/frame?i=0")
        assert status == 400 and text == "no frames to show: none were given (explore --data DIR)\n"
        assert len(json.loads(request(url + "api/sample?seed=3")[2])["z"]) == 8
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


@pytest.mark.gpu
def test_the_server_decodes_on_the_gpu_as_on_the_cpu(run_dir):
    proc, url = start_explore("--checkpoint", run_dir, "--device", "gpu")
    try:
        info = json.loads(request(url + "api/info")[2])
        z = np.random.default_rng(2).standard_normal(info["latent_dim"])
        answer = json.loads(request(url + "api/decode", {"z": [float(v) for v in z]})[2])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    m = load(run_dir).model
    on_cpu = to_uint8(m.decode(z[None].astype(m.dtype)))[0]
    assert info["device"] == "gpu" and answer["decode_ms"] > 0
    assert np.abs(pixels(answer["image"]).astype(int) - on_cpu).max() <= 1      # float32 sums in another order
