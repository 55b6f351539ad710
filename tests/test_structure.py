"""The package's shape: every import goes one way (no module imports, even inside a function,
a module that imports it back), and nothing in it imports an autodiff framework."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "scratchvae")


def modules():
    """{dotted name: path} of every module of the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), ROOT)[:-3].replace(os.sep, ".")
                found[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(folder, f)
    return found


def imports_of(name, path, known):
    """The package's modules that `name` imports anywhere in its text (top level or inside a function)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            mod = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        out.update(t for t in targets if t in known and t != name)
    return out


def import_graph():
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycle(graph):
    """One import cycle as a list of module names, or None."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                return stack[stack.index(t):] + [t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        state[m] = "done"
        stack.pop()
        return None
    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_imports_go_one_way():
    # a package's own __init__ is imported by every module in it: that edge is Python's, not ours
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in import_graph().items()}
    found = cycle(graph)
    assert found is None, "import cycle: " + " → ".join(found)


@pytest.mark.parametrize("importer, imported", [
    ("scratchvae.checkpoint", "scratchvae.vae"),            # checkpoints are built on the model, not in it
    ("scratchvae.im2col", "scratchvae.cuda"),               # the kernels are told sizes, they import nothing back
    ("scratchvae.losses", "scratchvae.elementwise"),        # the loss's sigmoid comes from below, not from a layer
    ("scratchvae.layers.activations", "scratchvae.elementwise"),
])
def test_direction_of(importer, imported):
    graph = import_graph()
    assert imported in graph[importer], f"{importer} no longer imports {imported}"
    assert importer not in graph[imported], f"{imported} imports {importer} back"


def test_losses_take_nothing_from_a_layer_file():
    assert "scratchvae.layers.activations" not in import_graph()["scratchvae.losses"]


def test_no_autodiff_framework():
    for name, path in modules().items():
        tree = ast.parse(open(path, encoding="utf-8").read())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        for framework in ("torch", "jax", "tensorflow", "autograd"):
            assert not any(x.split(".")[0] == framework for x in names), f"{name} imports {framework}"
