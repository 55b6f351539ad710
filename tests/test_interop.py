"""The trained model where other code reads it: safetensors weights in PyTorch's names and layouts, both ways,
and the ONNX graphs run by onnxruntime (scratchvae/run/statedict.py, scratchvae/use/)."""
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scratchvae
from runs import ROOT, pixels, request, start_explore, trained_run
from scratchvae.check import reference
from scratchvae.cli import run
from scratchvae.cli.encode import main as encode_main
from scratchvae.cli.export import main as export_main
from scratchvae.cli.sample import main as sample_main
from scratchvae.data.episodes import episode_name
from scratchvae.model import vae
from scratchvae.model.vae import DEFAULT_DECODER
from scratchvae.run import statedict
from scratchvae.run.checkpoint import CheckpointError
from scratchvae.use import export as export_module
from scratchvae.use import onnxgraph

safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="the export extra is not installed")
ort = pytest.importorskip("onnxruntime", reason="the export extra is not installed")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    return trained_run(tmp_path_factory, data, steps=6)


def frames_of(data, n=6):
    return np.load(os.path.join(data, episode_name(1)))["obs"][:n]               # uint8 (n, 64, 64, 3)


def one_line(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


# ---- the layouts, proven against PyTorch's conventions written out with the reference loops --------------------

def torch_forward(t, x, z, naming, dense_relu, crop):
    """mu, log σ² and pictures from a file's tensors alone, as PyTorch's modules compute them: nn.Conv2d
    (weight (out, in, kh, kw)), view(N, -1) of NCHW, nn.Linear (y = x·weightᵀ + bias), nn.ConvTranspose2d
    (weight (in, out, kh, kw)); the reference loops for the convolutions, no line of the model's code."""
    mu_name, lv_name, dense_name = (("encoder.mu", "encoder.logvar", "decoder.dense") if naming == "scratchvae" else
                                    ("encoder.fc_mu", "encoder.fc_logsigma", "decoder.fc1"))
    h = x
    for i in range(1, 5):
        h = np.maximum(reference.conv2d(h, t[f"encoder.conv{i}.weight"], t[f"encoder.conv{i}.bias"], stride=2), 0)
    f = h.reshape(len(h), -1)                                   # view(N, -1)
    mu = f @ t[f"{mu_name}.weight"].T + t[f"{mu_name}.bias"]
    second = f @ t[f"{lv_name}.weight"].T + t[f"{lv_name}.bias"]
    logvar = second if naming == "scratchvae" else 2 * second   # ctallec's head gives log σ
    d = z @ t[f"{dense_name}.weight"].T + t[f"{dense_name}.bias"]
    d = np.maximum(d, 0) if dense_relu else d
    d = d.reshape(len(z), t["decoder.deconv1.weight"].shape[0], *crop[0])
    for i in range(1, 5):
        d = reference.conv_transpose2d(d, t[f"decoder.deconv{i}.weight"], t[f"decoder.deconv{i}.bias"], stride=2)
        d = np.maximum(d, 0) if i < 4 else d
    (top, left), (hh, ww) = crop[1], x.shape[2:]
    return mu, logvar, 1 / (1 + np.exp(-d[:, :, top:top + hh, left:left + ww]))


@pytest.mark.slow
@settings(max_examples=4, deadline=None)
@given(st.sampled_from(["scratchvae", "ctallec"]), st.booleans(), st.sampled_from([(64, 64), (60, 80)]),
       st.integers(1, 3), st.integers(0, 2**31))
def test_the_file_holds_pytorch_names_and_layouts(naming, dense_relu, size, n, seed):
    h, w = size
    m = scratchvae.VAE(input_shape=(3, h, w), latent_dim=5, encoder=((4, 4, 2), (6, 4, 2), (5, 4, 2), (7, 4, 2)),
                       decoder=((6, 5, 2), (5, 5, 2), (4, 6, 2), (None, 6, 2)), dense_size=9, dense_relu=dense_relu,
                       dtype=np.float64, seed=seed % 1000)
    t = safetensors_numpy.load(statedict.encode(m, naming))
    rng = np.random.default_rng(seed)
    x = rng.random((n, 3, h, w))
    z = rng.standard_normal((n, 5))
    (h0, dh), (w0, dw) = (vae.decoder_start(s, DEFAULT_DECODER) for s in size)   # 64×64: 1×1 → 64×64
    seed_hw, corner = (h0, w0), ((dh - h) // 2, (dw - w) // 2)                     # 60×80: 1×2 → 64×80, cropped
    mu, logvar, pictures = torch_forward(t, x, z, naming, dense_relu, (seed_hw, corner))
    ours_mu, ours_logvar = m.encode(x)
    np.testing.assert_allclose(ours_mu, mu, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours_logvar, logvar, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m.decode(z), pictures, rtol=1e-10, atol=1e-12)


def test_what_names_and_shapes_the_file_has():
    m = scratchvae.VAE(seed=1)
    t = safetensors_numpy.load(statedict.encode(m))
    assert t["encoder.conv1.weight"].shape == (32, 3, 4, 4) and t["encoder.conv4.bias"].shape == (256,)
    assert t["encoder.mu.weight"].shape == t["encoder.logvar.weight"].shape == (32, 1024)       # (out, in)
    assert t["decoder.dense.weight"].shape == (1024, 32)
    assert t["decoder.deconv1.weight"].shape == (1024, 128, 5, 5)                              # (in, out, kh, kw)
    assert len(t) == 22 and sum(a.size for a in t.values()) == m.num_params()
    ct = safetensors_numpy.load(statedict.encode(m, "ctallec"))
    assert sorted(ct) == sorted(k.replace("encoder.mu.", "encoder.fc_mu.").replace("encoder.logvar.",
                                "encoder.fc_logsigma.").replace("decoder.dense.", "decoder.fc1.") for k in t)
    np.testing.assert_array_equal(ct["encoder.fc_logsigma.bias"], t["encoder.logvar.bias"] / 2)


# ---- export, then read back without PyTorch ------------------------------------------------------------------

@pytest.mark.parametrize("naming", ["scratchvae", "ctallec"])
def test_export_and_load_again_give_the_same_model(trained, data, tmp_path, naming, capsys):
    out = str(tmp_path / "vae.safetensors")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert export_main(["--checkpoint", trained, "--out", out, "--naming", naming]) == 0
    assert f"→ {out} (safetensors, naming {naming})" in capsys.readouterr().out
    warned = [str(w.message) for w in caught if str(w.message).startswith("ctallec/world-models' VAE: ")]
    assert len(warned) == (2 if naming == "ctallec" else 0), warned        # widths other than its, and its ReLU
    assert naming == "scratchvae" or "decoder has a ReLU after fc1" in warned[1]
    before, after = scratchvae.load(trained), scratchvae.load(out)
    assert after.step == before.step == 6 and after.optimizer is None and after.path == out
    assert after.model.config == before.model.config and after.meta["naming"] == naming
    for k, p in before.model.params.items():
        np.testing.assert_array_equal(after.model.params[k], p, err_msg=k)
    x = scratchvae.to_model_input(frames_of(data))
    for a, b in zip(before.model.encode(x), after.model.encode(x)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(before.model.reconstruct(x), after.model.reconstruct(x))


def test_the_tools_work_on_a_model_from_a_file_without_our_metadata(trained, data, tmp_path, capsys):
    """A file written by PyTorch (its state_dict, no metadata): read as the World Models architecture with
    its tensors' widths; sample and encode-latents take it as they take a checkpoint."""
    ck = scratchvae.load(trained)
    plain = str(tmp_path / "from_pytorch.safetensors")
    safetensors_numpy.save_file(statedict.tensors(ck.model), plain)           # no metadata at all
    back = scratchvae.load(plain)
    assert back.step == 0 and back.model.latent_dim == 8 and back.model.config["encoder"][0] == [4, 4, 2]
    assert not back.model.config.get("dense_relu")
    x = scratchvae.to_model_input(frames_of(data))
    np.testing.assert_array_equal(back.model.reconstruct(x), ck.model.reconstruct(x))
    assert sample_main(["--checkpoint", plain, "--out", str(tmp_path / "pictures"), "--data", data]) == 0
    assert encode_main(["--checkpoint", plain, "--data", data, "--out", str(tmp_path / "z.npz"), "--quiet"]) == 0
    with np.load(tmp_path / "z.npz") as z:
        first = int(z["starts"][1])                                 # frames_of's episode, the second
        # (the tool encodes an episode at a time, 12 frames: other sums than 6 frames' by the last bit)
        np.testing.assert_allclose(z["mu"][first:first + 6], ck.model.encode(x)[0], rtol=1e-5, atol=1e-7)
        assert str(z["checkpoint"]) == plain
    # ctallec's names: its decoder's ReLU after fc1 comes with them, and its log σ head is doubled into log σ²
    theirs = str(tmp_path / "ctallec.safetensors")
    safetensors_numpy.save_file(statedict.tensors(ck.model, "ctallec"), theirs)
    back = scratchvae.load(theirs)
    assert back.model.config["dense_relu"] is True
    np.testing.assert_array_equal(back.model.encode(x)[1], ck.model.encode(x)[1])
    assert [type(layer).__name__ for layer in back.model.decoder][:3] == ["Dense", "ReLU", "Reshape"]


@pytest.mark.slow
def test_explore_serves_an_exported_model(trained, data, tmp_path):
    """bin/explore on a safetensors file: the same codes as the checkpoint's model gives."""
    import signal
    out = str(tmp_path / "vae.safetensors")
    scratchvae.export(trained, out)
    proc, url = start_explore("--checkpoint", out, "--data", data)
    try:
        info = json.loads(request(url + "api/info")[2])
        assert info["checkpoint"] == out and info["step"] == 6
        frame = json.loads(request(url + "api/frame?i=5")[2])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    shown = pixels(frame["frame"])[None]                            # the frame the page shows, (1, 64, 64, 3)
    want = scratchvae.load(trained).model.encode(scratchvae.to_model_input(shown))[0][0]
    np.testing.assert_allclose(frame["mu"], want, rtol=1e-5, atol=1e-6)


def wrong_files(tmp_path, tensors):
    """(file, what its one line must say) for files of other architectures and damaged ones."""
    def saved(name, t, metadata=None):
        path = str(tmp_path / name)
        safetensors_numpy.save_file(t, path, metadata)
        return path
    kernel3 = {**tensors, "encoder.conv2.weight": np.zeros((8, 4, 3, 3), np.float32)}
    missing = {k: v for k, v in tensors.items() if k != "decoder.deconv3.bias"}
    extra = {**tensors, "decoder.fc2.weight": np.zeros((3, 3), np.float32)}
    nan = {**tensors, "encoder.mu.bias": np.full(8, np.nan, np.float32)}
    ints = {**tensors, "encoder.mu.bias": np.zeros(8, np.int32)}
    transposed = {**tensors, "encoder.mu.weight": tensors["encoder.mu.weight"].T.copy()}
    meta = {"config": json.dumps({"input_shape": [3, 64, 64], "latent_dim": 8, "encoder": [[4, 4, 2]] * 4,
                                  "decoder": [[8, 5, 2], [8, 5, 2], [4, 6, 2], [3, 6, 2]], "dense_size": 16})}
    return [
        (saved("kernel3.safetensors", kernel3), "not this architecture: encoder.conv2.weight is (8, 4, 3, 3) in the "
         "file, (8, 4, 4, 4) in the World Models VAE for 64×64 frames (kernels 4,4,4,4,5,5,6,6) with the widths of "
         "the file's tensors"),
        (saved("transposed.safetensors", transposed), "not this architecture: encoder.mu.weight is (32, 8) in the "
         "file, (8, 32) in the World Models VAE"),
        (saved("missing.safetensors", missing), "not this architecture: no tensor decoder.deconv3.bias (expected "
         "(4,) for the World Models VAE"),
        (saved("extra.safetensors", extra), "not this architecture: the file has tensor decoder.fc2.weight (3, 3), "
         "which the World Models VAE"),
        (saved("nan.safetensors", nan), "encoder.mu.bias holds NaN or infinite values"),
        (saved("ints.safetensors", ints), "encoder.mu.bias is stored as I32; expected F32 (or F16, F64, which NumPy "
         "reads too): in PyTorch, save the state_dict's tensors .float()"),
        (saved("metadata.safetensors", tensors, meta), "not this architecture: encoder.conv2.weight is (8, 4, 4, 4) "
         "in the file, (4, 4, 4, 4) in the VAE its metadata describes"),
    ]


def test_another_architecture_is_refused_in_one_line(trained, tmp_path, capsys):
    tensors = statedict.tensors(scratchvae.load(trained).model)
    for path, said in wrong_files(tmp_path, tensors):
        with pytest.raises(CheckpointError) as e:
            scratchvae.load(path)
        assert str(e.value).startswith(f"{path}: {said}"), str(e.value)
        assert run("sample", sample_main, ["--checkpoint", path, "--out", str(tmp_path / "never")]) == 2
        assert one_line(capsys) == f"sample: error: {e.value}"
        assert not os.path.exists(tmp_path / "never")
    whole = open(wrong_files(tmp_path, tensors)[0][0], "rb").read()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(whole[:len(whole) // 2])                        # a file cut short: its header still fits
    assert run("encode-latents", encode_main, ["--checkpoint", str(cut), "--data", str(tmp_path), "--out",
                                               str(tmp_path / "z.npz")]) == 2
    assert one_line(capsys).startswith(f"encode-latents: error: {cut}: not a readable safetensors file (truncated "
                                       "or corrupt?)")


# ---- ONNX through onnxruntime ---------------------------------------------------------------------------------

def float64_twin(model):
    """The same model in float64: what float32 sums round away from."""
    twin = scratchvae.VAE(**{**model.config, "dtype": np.float64})
    for k, p in model.params.items():
        twin.params[k][...] = p
    return twin


@pytest.mark.parametrize("case", ["trained", "60x80", "dense_relu"])
def test_onnx_graphs_agree_with_our_forward_to_float32_rounding(trained, data, case):
    """On random and real frames and codes, batches of 1 and 7 (the batch is dynamic): onnxruntime's outputs are
    as close to the float64 truth as ours are (each within a few float32 roundings of it). The models: the tools'
    trained one, the default one for 60×80 frames (its decoder ends in a crop), and one with ctallec's ReLU."""
    model = {"trained": lambda: scratchvae.load(trained).model,
             "60x80": lambda: scratchvae.VAE(input_shape=(3, 60, 80), seed=4),
             "dense_relu": lambda: scratchvae.VAE(dense_relu=True, seed=4)}[case]()
    size = model.input_shape[1:]
    truth = float64_twin(model)
    enc = export_module.session(ort, onnxgraph.encoder(model))
    dec = export_module.session(ort, onnxgraph.decoder(model))
    rng = np.random.default_rng(5)
    real = frames_of(data, 7) if size == (64, 64) else rng.integers(0, 256, (7, *size, 3), dtype=np.uint8)
    for frames in (real, rng.integers(0, 256, (7, *size, 3), dtype=np.uint8), real[:1]):
        z = rng.standard_normal((len(frames), model.latent_dim)).astype(np.float32)
        exact = dict(zip(("mu", "logvar"), truth.encode(scratchvae.to_model_input(frames, dtype=np.float64))),
                     pictures=truth.decode(z.astype(np.float64)))
        ours = dict(zip(("mu", "logvar"), model.encode(scratchvae.to_model_input(frames))), pictures=model.decode(z))
        theirs = dict(zip(("mu", "logvar"), enc.run(None, {"frames": frames})), pictures=dec.run(None, {"z": z})[0])
        for k, want in exact.items():
            assert theirs[k].shape == want.shape and theirs[k].dtype == np.float32
            scale = np.abs(want).max()
            ours_error, their_error = np.abs(ours[k] - want).max(), np.abs(theirs[k] - want).max()
            assert their_error <= max(4 * ours_error, 64 * np.finfo(np.float32).eps * scale), \
                (k, their_error, ours_error, scale)


def test_a_float64_model_gives_float32_graphs(tmp_path):
    """onnxruntime has no float64 convolution: the graphs are float32 whatever the model's dtype, and checked."""
    model = scratchvae.VAE(latent_dim=4, encoder=((4, 4, 2), (4, 4, 2), (4, 4, 2), (4, 4, 2)),
                           decoder=((4, 5, 2), (4, 5, 2), (4, 6, 2), (None, 6, 2)), dense_size=8, dtype=np.float64)
    encoder_file, decoder_file = scratchvae.export(model, str(tmp_path / "f64.onnx"))
    frames = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    mu, logvar = export_module.session(ort, _read(encoder_file)).run(None, {"frames": frames})
    assert mu.dtype == logvar.dtype == np.float32
    np.testing.assert_allclose(mu, model.encode(scratchvae.to_model_input(frames, dtype=np.float64))[0],
                               rtol=1e-5, atol=1e-6)


def _read(path):
    import onnx
    return onnx.load(path)


def test_export_onnx_writes_two_checked_graphs(trained, tmp_path, capsys):
    out = tmp_path / "deep" / "vae.onnx"
    assert export_main(["--checkpoint", trained, "--out", str(out)]) == 0
    written = [tmp_path / "deep" / "vae-encoder.onnx", tmp_path / "deep" / "vae-decoder.onnx"]
    assert f"→ {written[0]}, {written[1]} (onnx, checked with onnxruntime" in capsys.readouterr().out
    import onnx
    for path, inputs, outputs in zip(written, (["frames"], ["z"]), (["mu", "logvar"], ["pictures"])):
        graph = onnx.load(str(path))
        onnx.checker.check_model(graph)
        assert [i.name for i in graph.graph.input] == inputs and [o.name for o in graph.graph.output] == outputs
        assert graph.opset_import[0].version == onnxgraph.OPSET
        assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
        assert json.loads({p.key: p.value for p in graph.metadata_props}["config"])["latent_dim"] == 8


def test_a_graph_that_disagrees_is_not_written(trained, tmp_path, monkeypatch):
    """The check can fail: a Flatten in the wrong order (H, W, C) gives other codes, and nothing is written."""
    model = scratchvae.load(trained).model
    layer = onnxgraph.Graph.layer

    def wrong_order(self, x, lay, hw):
        if type(lay).__name__ == "Flatten":
            x = self.node("Transpose", [x], perm=[0, 2, 3, 1])
        return layer(self, x, lay, hw)
    monkeypatch.setattr(onnxgraph.Graph, "layer", wrong_order)
    with pytest.raises(ValueError, match=r"the ONNX graph's mu differs from the model's by .* of its largest value"):
        scratchvae.export(model, str(tmp_path / "vae.onnx"))
    assert os.listdir(tmp_path) == []


def test_export_refuses_in_one_line(trained, tmp_path, monkeypatch, capsys):
    cases = [(["--out", str(tmp_path / "vae.bin")], "cannot tell the format from its extension .bin; name a "
              ".safetensors or .onnx file, or give --format"),
             (["--out", str(tmp_path / "vae.onnx"), "--naming", "ctallec"], "--naming is for safetensors files"),
             (["--out", str(tmp_path)], f"--out {tmp_path}: cannot tell the format")]
    (tmp_path / "x.safetensors").mkdir()
    cases.append((["--out", str(tmp_path / "x.safetensors")], f"--out {tmp_path / 'x.safetensors'} is a folder"))
    for args, said in cases:
        assert run("export", export_main, ["--checkpoint", trained, *args]) == 2
        assert said in one_line(capsys)
    monkeypatch.setitem(sys.modules, "onnx", None)                  # the export extra not installed
    assert run("export", export_main, ["--checkpoint", trained, "--out", str(tmp_path / "a" / "vae.onnx")]) == 2
    assert one_line(capsys) == ("export: error: writing ONNX graphs needs onnx, which is not installed (import of onnx "
                                "halted; None in sys.modules): pip install -e '.[export]' in the project, or pip "
                                "install onnx")
    assert sorted(os.listdir(tmp_path)) == ["x.safetensors"]


@pytest.mark.slow
def test_reading_weights_without_the_extra_says_which_to_install(trained, tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "vae.safetensors")
    scratchvae.export(trained, out)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    assert run("sample", sample_main, ["--checkpoint", out, "--out", str(tmp_path / "p")]) == 2
    assert one_line(capsys).startswith("sample: error: reading or writing safetensors files needs safetensors, which "
                                       "is not installed (import of safetensors.numpy halted; None in sys.modules): "
                                       "pip install -e '.[export]' in the project")
    assert not os.path.exists(tmp_path / "p")


def test_bin_export_as_a_user_runs_it(trained, tmp_path):
    r = subprocess.run([sys.executable, os.path.join("bin", "export"), "--checkpoint", trained, "--best",
                        "--out", str(tmp_path / "vae.safetensors")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert scratchvae.load(str(tmp_path / "vae.safetensors")).step == scratchvae.load(trained, best=True).step


def test_the_pytorch_module_of_the_docs_gives_our_outputs(trained, data, tmp_path):
    """docs/examples/pytorch_vae.py (shown in docs/training.md) loads an exported file with load_state_dict."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (the docs' PyTorch module is checked "
                                                "where it is)")
    sys.path.insert(0, os.path.join(ROOT, "docs", "examples"))
    try:
        import pytorch_vae
    finally:
        sys.path.pop(0)
    out = str(tmp_path / "vae.safetensors")
    scratchvae.export(trained, out)
    ours, theirs = scratchvae.load(out).model, pytorch_vae.load(out)
    frames = frames_of(data)
    x = scratchvae.to_model_input(frames)
    with torch.no_grad():
        mu, logvar = theirs.encoder(torch.from_numpy(np.ascontiguousarray(x)))
        pictures = theirs.decoder(mu)
    want_mu, want_logvar = ours.encode(x)
    np.testing.assert_allclose(mu.numpy(), want_mu, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(logvar.numpy(), want_logvar, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(pictures.numpy(), ours.decode(want_mu), rtol=1e-4, atol=1e-6)
