"""The docs stay true: the code they show is the current code, and every reference resolves.

(The worked examples in docs/*.md run as doctests: setup.cfg's addopts has
--doctest-glob=*.md, so pytest collects them and checks every printed number.)
"""
import functools
import importlib
import importlib.util
import os
import re

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("docsync", os.path.join(ROOT, "docs", "sync.py"))
sync = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sync)

PAGES = [os.path.basename(p) for p in sync.pages()]


@pytest.mark.parametrize("page", PAGES)
def test_code_shown_is_the_current_code(page):
    text = open(os.path.join(sync.DOCS, page), encoding="utf-8").read()
    assert sync.render(text) == text, f"docs/{page} shows stale code: run python docs/sync.py"


@pytest.mark.parametrize("page", PAGES)
def test_every_link_and_picture_resolves(page):
    text = open(os.path.join(sync.DOCS, page), encoding="utf-8").read()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert os.path.exists(os.path.join(sync.DOCS, target)), f"docs/{page} links to missing {target}"


def slug(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@functools.lru_cache(maxsize=None)
def anchors(path):
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"```.*?```", "", text, flags=re.S)           # a '# comment' in code is no heading
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", PAGES)
def test_every_anchor_a_link_names_is_a_heading(page):
    text = open(os.path.join(sync.DOCS, page), encoding="utf-8").read()
    for target, fragment in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", text):
        if target.startswith("http"):
            continue
        path = os.path.join(sync.DOCS, target or page)
        assert fragment in anchors(path), f"docs/{page} links to #{fragment}: no heading of {target or page}"


def test_the_anchor_check_can_fail():
    assert slug("Proving it: finite differences") == "proving-it-finite-differences"
    assert (slug("One rule: a linear map's backward is its transpose")
            == "one-rule-a-linear-maps-backward-is-its-transpose")
    assert "dense" in anchors(os.path.join(sync.DOCS, "backward.md"))
    assert "densely" not in anchors(os.path.join(sync.DOCS, "backward.md"))


def test_a_renamed_function_is_an_error():
    with pytest.raises(sync.DocsError, match="no function or class 'backwards'"):
        sync.find("scratchvae/model/layers/dense.py:Dense.backwards")
    with pytest.raises(sync.DocsError, match="no file"):
        sync.find("scratchvae/nothing.py:f")
    with pytest.raises(sync.DocsError, match="one '# docs: nope' line"):
        sync.find("scratchvae/model/vae.py#nope")
    stale = "<!-- include scratchvae/model/layers/dense.py:Dense.backward -->\nold code\n<!-- end include -->"
    assert "def backward(self, dy):" in sync.render(stale) and "old code" not in sync.render(stale)


def sections(text, level="## "):
    """{heading: the text under it, up to the next heading of the same level}."""
    parts = re.split(rf"^{level}(.+)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


# every layer and loss term: its page and section, the code that section must show, and at least one worked
# example (a doctest, which pytest runs) unless the section says where its code is proven instead
TAUGHT = {
    ("backward.md", "Dense"): ["scratchvae/model/layers/dense.py:Dense.forward", "scratchvae/model/layers/dense.py:Dense.backward"],
    ("backward.md", "ReLU"): ["scratchvae/model/layers/activations.py:ReLU"],
    ("backward.md", "Sigmoid"): ["scratchvae/ops/elementwise.py:sigmoid", "scratchvae/model/layers/activations.py:Sigmoid"],
    ("backward.md", "Convolution, index by index"): ["scratchvae/check/reference.py:conv2d",
                                                     "scratchvae/check/reference.py:conv2d_backward"],
    ("backward.md", "im2col"): ["scratchvae/check/reference.py:im2col"],
    ("backward.md", "Conv2D"): ["scratchvae/model/layers/conv.py:Conv2D.forward", "scratchvae/model/layers/conv.py:Conv2D.backward",
                                "scratchvae/ops/im2col.py:as_matrix", "scratchvae/ops/im2col.py:from_matrix",
                                "scratchvae/ops/im2col.py:images_to_matrix", "scratchvae/ops/im2col.py:matrix_to_images"],
    ("backward.md", "col2im"): ["scratchvae/check/reference.py:col2im"],
    ("backward.md", "ConvTranspose2D"): ["scratchvae/model/layers/conv.py:ConvTranspose2D.forward",
                                         "scratchvae/model/layers/conv.py:ConvTranspose2D.backward",
                                         "scratchvae/check/reference.py:conv_transpose2d"],
    ("backward.md", "The reconstruction loss"): ["scratchvae/model/losses.py:mse_recon", "scratchvae/model/losses.py:bernoulli_recon_cpu"],
    ("backward.md", "The KL term and free bits"): ["scratchvae/model/losses.py:kl_per_image", "scratchvae/model/losses.py:kl_grads",
                                                   "scratchvae/model/losses.py:free_bits"],
    ("backward.md", "The reparameterization"): ["scratchvae/model/losses.py#reparameterize",
                                                "scratchvae/model/losses.py#reparameterize-backward"],
    ("backward.md", "The whole VAE"): ["scratchvae/model/vae.py:VAE.loss", "scratchvae/model/vae.py:VAE.backward",
                                       "scratchvae/model/vae.py:forward", "scratchvae/model/vae.py:backward",
                                       "scratchvae/model/layers/dense.py:Heads.backward"],
    ("backward.md", "Adam"): ["scratchvae/check/reference.py:adam", "scratchvae/model/optim.py:Adam.step",
                              "scratchvae/model/optim.py:Adam.prepare", "scratchvae/ops/adam.py:adam_cpu"],
    ("speed.md", "im2col as one strided copy"): ["scratchvae/ops/im2col.py:im2col_cpu"],
    ("speed.md", "col2im, a strided add per kernel offset"): ["scratchvae/ops/im2col.py:col2im_cpu"],
    ("speed.md", "The fast path: split by output parity"): ["scratchvae/ops/parity.py:phase_grid",
                                                            "scratchvae/ops/parity.py:phase_weights",
                                                            "scratchvae/ops/parity.py:conv_transpose_parity",
                                                            "scratchvae/check/reference.py:conv_transpose2d_by_parity"],
    ("speed.md", "The fast layers"): ["scratchvae/model/layers/fast.py:FastConv2D.input_gradient",
                                      "scratchvae/model/layers/fast.py:FastConvTranspose2D.forward"],
    ("speed.md", "Two linear maps in a row"): ["scratchvae/model/layers/fast.py:DenseThenDeconv.backward"],
    ("speed.md", "Threads"): ["scratchvae/ops/threads.py:parallel"],
    ("speed.md", "Buffers kept from step to step"): ["scratchvae/model/layers/base.py:Layer._buffer"],
}
NO_EXAMPLE = {"Sources"}            # sections that need no worked example


@pytest.mark.parametrize("page, heading", sorted(TAUGHT))
def test_each_layer_has_its_section_with_its_code(page, heading):
    text = open(os.path.join(sync.DOCS, page), encoding="utf-8").read()
    found = sections(text)
    assert heading in found, f"docs/{page} has no section '## {heading}'"
    for target in TAUGHT[page, heading]:
        assert f"<!-- include {target} -->" in found[heading], f"docs/{page} '## {heading}' does not show {target}"


def test_the_section_finder_and_the_table_can_fail():
    text = "# t\n## A\nfoo <!-- include x.py:f -->\n## B\nbar\n"
    assert sections(text) == {"A": "\nfoo <!-- include x.py:f -->\n", "B": "\nbar\n"}
    assert "<!-- include x.py:f -->" not in sections(text)["B"]


@pytest.mark.parametrize("page", ["backward.md", "speed.md"])
def test_every_section_of_the_derivation_pages_has_a_worked_example(page):
    text = open(os.path.join(sync.DOCS, page), encoding="utf-8").read()
    missing = [heading for heading, body in sections(text).items() if "\n>>> " not in body and heading not in NO_EXAMPLE]
    assert not missing, f"docs/{page}: sections without a worked example: {missing}"


def test_pages_with_worked_examples_have_them():
    for page, least in (("backward.md", 30), ("speed.md", 10), ("vae.md", 5), ("README.md", 3), ("exercises.md", 10)):
        text = open(os.path.join(sync.DOCS, page), encoding="utf-8").read()
        assert text.count("\n>>> ") >= least, f"docs/{page}: fewer than {least} worked examples"


@pytest.mark.slow
def test_the_readme_examples_run(tmp_path, monkeypatch):
    """The first trains a step; the second loads a trained run: it runs where `make train` leaves one (here a
    tiny one, in a folder of its own)."""
    from runs import tiny_data
    from scratchvae.cli.train import main as train_main
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    first, second, third = re.findall(r"```python\n(.*?)```", readme, re.S)
    scope = {}
    exec(compile(first, "README.md", "exec"), scope)
    assert scope["mu"].shape == (8, 32) and float(scope["out"]["loss"]) > 0
    monkeypatch.chdir(tmp_path)
    tiny_data(os.path.join("data", "carracing-default"), episodes=2)
    assert train_main(["--data", os.path.join("data", "carracing-default"), "--steps", "2", "--batch-size", "8",
                       "--quiet"]) == 0
    scope = {}
    exec(compile(second, "README.md", "exec"), scope)
    assert scope["ck"].step == 2 and scope["mu"].shape == (8, 32) and scope["pictures"].shape == (8, 3, 64, 64)


def test_the_readmes_own_layer_is_proved_and_a_wrong_one_is_not(capsys):
    """The third example: a layer of one's own through check_layer. It passes; with ∂L/∂a a mean, it does not."""
    from scratchvae.check.gradcheck import check_layer
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    third = re.findall(r"```python\n(.*?)```", readme, re.S)[2]
    scope = {}
    exec(compile(third, "README.md", "exec"), scope)
    assert max(scope["errors"].values()) < 1e-7 and "'x'" in capsys.readouterr().out

    class Wrong(scope["Scale"]):
        def backward(self, dy):
            dx = super().backward(dy)
            self.own_grads["a"][...] /= dy.size
            return dx
    errors = check_layer(Wrong(), np.random.default_rng(0).normal(size=(4, 3)))
    assert errors["x"] < 1e-7 and errors["a"] > 0.1


def test_training_page_shows_every_tools_options_from_its_parser():
    text = open(os.path.join(sync.DOCS, "training.md"), encoding="utf-8").read()
    tools = sorted(name[:-3] for name in os.listdir(os.path.join(sync.ROOT, "scratchvae", "cli"))
                   if name.endswith(".py") and name != "__init__.py")
    assert len(tools) >= 5                                      # collect, encode, explore, sample, train, …
    for module in (f"scratchvae.cli.{tool}" for tool in tools):
        parser = importlib.import_module(module).parser()
        prog = parser.prog
        assert f"<!-- options {module} -->" in text, f"docs/training.md does not show {prog}'s options"
        shown = sync.OPTIONS.search(text[text.index(f"<!-- options {module} -->"):]).group("body")
        assert shown.startswith(f"```\n{prog}")
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in shown, f"{prog}'s {flag} is missing from docs/training.md"


def test_an_option_changed_in_the_parser_makes_the_page_stale(monkeypatch):
    from scratchvae.cli import train
    page = "<!-- options scratchvae.cli.train -->\n<!-- end options -->"
    before = sync.render(page)
    assert "| `--lr LR` | Adam's learning rate (default 0.001) |" in before
    original = train.parser

    def changed():
        p = original()
        p.add_argument("--warmup", type=int, default=0, help="steps of learning-rate warm-up")
        return p
    monkeypatch.setattr(train, "parser", changed)
    after = sync.render(before)
    assert after != before and "| `--warmup WARMUP` | steps of learning-rate warm-up |" in after
    with pytest.raises(sync.DocsError, match="expected a module with a parser"):
        sync.render_options("scratchvae.cli.nothing")


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["--chekc"]])
def test_sync_asked_for_help_or_given_a_wrong_option_writes_nothing(argv, tmp_path, monkeypatch, capsys):
    """Only --check is an option; --help prints the help, a misspelling is refused, and neither touches a page
    (every page made stale first, so a rewrite would show)."""
    stale = tmp_path / "docs"
    stale.mkdir()
    page = stale / "page.md"
    page.write_text("<!-- include scratchvae/ops/sizes.py:conv_out_size -->\nold\n<!-- end include -->\n")
    monkeypatch.setattr(sync, "DOCS", str(stale))
    with pytest.raises(SystemExit) as e:
        sync.main(argv)
    assert e.value.code == (0 if argv[0].startswith("-h") or argv[0] == "--help" else 2)
    assert "old" in page.read_text()
    assert sync.main(["--check"]) == 1 and "old" in page.read_text()
    assert sync.main([]) == 0 and "def conv_out_size" in page.read_text()
