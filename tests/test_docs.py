"""The docs stay true: the code they show is the current code, and every reference resolves.

(The worked examples in docs/*.md run as doctests: setup.cfg's addopts has
--doctest-glob=*.md, so pytest collects them and checks every printed number.)
"""
import importlib.util
import os
import re

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


def test_a_renamed_function_is_an_error():
    with pytest.raises(sync.DocsError, match="no function or class 'backwards'"):
        sync.find("scratchvae/layers/dense.py:Dense.backwards")
    with pytest.raises(sync.DocsError, match="no file"):
        sync.find("scratchvae/nothing.py:f")
    with pytest.raises(sync.DocsError, match="one '# docs: nope' line"):
        sync.find("scratchvae/vae.py#nope")
    stale = "<!-- include scratchvae/layers/dense.py:Dense.backward -->\nold code\n<!-- end include -->"
    assert "def backward(self, dy):" in sync.render(stale)


def test_every_page_has_includes_or_examples():
    for page in ("backward.md", "vae.md", "gpu.md"):
        text = open(os.path.join(sync.DOCS, page), encoding="utf-8").read()
        assert "<!-- include " in text or ">>> " in text
    backward = open(os.path.join(sync.DOCS, "backward.md"), encoding="utf-8").read()
    for name in ("Dense", "ReLU", "Sigmoid", "Conv2D", "col2im", "ConvTranspose2D", "reparameterization",
                 "KL", "reconstruction", "Adam"):
        assert name in backward


def test_the_readme_example_runs():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "README.md has no python example"
    for code in blocks:
        scope = {}
        exec(compile(code, "README.md", "exec"), scope)
    assert scope["mu"].shape == (8, 32) and float(scope["out"]["loss"]) > 0
