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
    """{module: the package's modules it imports}, less the edge to a package's own __init__, which every
    module in it imports (`from . import x` names the package): that edge is Python's, not ours."""
    known = modules()
    return {name: {t for t in imports_of(name, path, known) if not name.startswith(t + ".")}
            for name, path in known.items()}


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
    found = cycle(import_graph())
    assert found is None, "import cycle: " + " → ".join(found)


def reachable(graph, start):
    """Every module `start` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for t in graph[todo.pop()] - seen:
            seen.add(t)
            todo.append(t)
    return seen


@pytest.mark.parametrize("upper, lower", [
    ("scratchvae.checkpoint", "scratchvae.vae"),            # checkpoints are built on the model, not in it
    ("scratchvae.im2col", "scratchvae.cuda"),               # the kernels are told sizes, they import nothing back
    ("scratchvae.losses", "scratchvae.elementwise"),        # the loss's sigmoid comes from below, not from a layer
    ("scratchvae.layers.activations", "scratchvae.elementwise"),
    ("scratchvae.gradcheck", "scratchvae.layers"),          # the checker wraps layers; no layer knows the checker
    ("scratchvae.vae", "scratchvae.layers"),
])
def test_direction_of(upper, lower):
    """`lower` never imports `upper`, directly or through another module (whether `upper` uses `lower` or not:
    moving code may drop an import, never turn one around)."""
    graph = import_graph()
    assert upper in graph and lower in graph, f"no module {upper if upper not in graph else lower}"
    assert upper not in reachable(graph, lower), f"{lower} imports {upper}"


def test_reachable_follows_imports_through_other_modules():
    graph = {"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a"}}
    assert reachable(graph, "a") == {"b", "c"} and "d" not in reachable(graph, "a")


def test_losses_take_nothing_from_a_layer_file():
    assert "scratchvae.layers.activations" not in import_graph()["scratchvae.losses"]


def test_no_autodiff_framework():
    for name, path in modules().items():
        tree = ast.parse(open(path, encoding="utf-8").read())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        for framework in ("torch", "jax", "tensorflow", "autograd"):
            assert not any(x.split(".")[0] == framework for x in names), f"{name} imports {framework}"
