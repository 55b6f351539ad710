"""The package's shape: its wings in order, every import going one way (no module imports, even inside a
function, a module that imports it back), and nothing in it importing an autodiff framework."""
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


# The wings, lowest first: a module imports from its own wing and the wings before it, never from one after.
WINGS = (
    "files",    # files written whole or not at all, the folder lock, the progress bar
    "ops",      # array operations, each with its CPU code, GPU caller and CUDA body; the device table
    "model",    # the layers, the losses, the VAE, Adam
    "check",    # the loop references and the finite-difference checker
    "data",     # CarRacing frames: collection, episode files, the loader
    "run",      # training: the step, the trainer, the run folder, checkpoints, pictures, several processes
    "use",      # what a trained model serves: latents for the next stage, the explorer
    "cli",      # the command lines of bin/
)
ALONE = {"scratchvae", "scratchvae.launch"}    # the lazy package and bin/'s launcher: they import no wing


def wing(module):
    """A module's place in WINGS (its wing's index); a ValueError for a module outside every wing."""
    parts = module.split(".")
    if len(parts) < 2 or parts[1] not in WINGS:
        raise ValueError(f"{module} lies in no wing of {WINGS}")
    return WINGS.index(parts[1])


def test_every_module_lies_in_a_wing():
    loose = [m for m in modules() if m not in ALONE and m.split(".")[1:2] not in ([w] for w in WINGS)]
    assert not loose, f"modules outside the wings {WINGS}: {loose}"


def upward(graph):
    """Every import of `graph` that runs from a wing to a later one, as 'a (wing) imports b (wing)'."""
    return sorted(f"{a} ({WINGS[wing(a)]}) imports {b} ({WINGS[wing(b)]})"
                  for a, targets in graph.items() if a not in ALONE for b in targets if b not in ALONE
                  if wing(b) > wing(a))


def test_wings_import_downwards():
    graph = import_graph()
    for name in ALONE:
        assert not graph[name], f"{name} imports {sorted(graph[name])}: it must stand alone"
    found = upward(graph)
    assert not found, "an import runs up the wings: " + "; ".join(found)


def test_the_wing_test_sees_an_upward_import():
    graph = {"scratchvae.ops.im2col": {"scratchvae.model.vae"}, "scratchvae.model.vae": {"scratchvae.ops.im2col"}}
    assert upward(graph) == ["scratchvae.ops.im2col (ops) imports scratchvae.model.vae (model)"]
    with pytest.raises(ValueError, match="no wing"):
        wing("scratchvae.im2col")


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
    ("scratchvae.run.checkpoint", "scratchvae.model.vae"),            # checkpoints are built on the model, not in it
    ("scratchvae.ops.im2col", "scratchvae.ops.cuda"),               # the kernels are told sizes, they import nothing back
    ("scratchvae.model.losses", "scratchvae.ops.elementwise"),        # the loss's sigmoid comes from below, not from a layer
    ("scratchvae.model.layers.activations", "scratchvae.ops.elementwise"),
    ("scratchvae.check.gradcheck", "scratchvae.model.layers"),          # the checker wraps layers; no layer knows the checker
    ("scratchvae.model.vae", "scratchvae.model.layers"),
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
    assert "scratchvae.model.layers.activations" not in import_graph()["scratchvae.model.losses"]


def test_no_autodiff_framework():
    for name, path in modules().items():
        tree = ast.parse(open(path, encoding="utf-8").read())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        for framework in ("torch", "jax", "tensorflow", "autograd"):
            assert not any(x.split(".")[0] == framework for x in names), f"{name} imports {framework}"
