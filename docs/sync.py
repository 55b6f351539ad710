"""Keep the code shown in docs/*.md identical to the code in the package.

A page shows code like this (the block between the two markers is written by this tool):

    <!-- include scratchvae/model/layers/dense.py:Dense.backward -->
    ```python
    ...the current source of Dense.backward...
    ```
    <!-- end include -->

The reference after "include" is a file and either a dotted name of a function, class or
method (Dense.backward), or "#marker" for the lines between `# docs: marker` and
`# end docs: marker` in that file. Names are found with Python's own parser, so a
renamed function is an error, not silent drift.

A command's options are shown the same way, rendered from the parser the command itself
uses (the module's `parser()`), so the page cannot describe an option that is gone:

    <!-- options scratchvae.cli.train -->
    ...a table of train-scratch's options, with their help and defaults...
    <!-- end options -->

    python docs/sync.py           rewrite the pages whose code is out of date
    python docs/sync.py --check   say which pages are out of date, exit 1 if any (the tests do this)
"""
import argparse
import ast
import importlib
import os
import re
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
BLOCK = re.compile(r"(<!-- include (?P<ref>\S+) -->\n)(?P<body>.*?)(<!-- end include -->)", re.S)
OPTIONS = re.compile(r"(<!-- options (?P<module>\S+) -->\n)(?P<body>.*?)(<!-- end options -->)", re.S)


class DocsError(ValueError):
    pass


def find(ref):
    """(source text, first line, last line) of a reference 'path:Dotted.name' or 'path#marker'."""
    if "#" in ref:
        path, marker = ref.split("#", 1)
    else:
        path, _, name = ref.partition(":")
        marker = None
        if not name:
            raise DocsError(f"{ref}: expected path:Name or path#marker")
    full = os.path.join(ROOT, path)
    if not os.path.isfile(full):
        raise DocsError(f"{ref}: no file {path}")
    lines = open(full, encoding="utf-8").read().splitlines()
    if marker is not None:
        start = [i for i, l in enumerate(lines) if l.strip() == f"# docs: {marker}"]
        end = [i for i, l in enumerate(lines) if l.strip() == f"# end docs: {marker}"]
        if len(start) != 1 or len(end) != 1 or end[0] <= start[0]:
            raise DocsError(f"{ref}: expected one '# docs: {marker}' line and one '# end docs: {marker}' after it")
        first, last = start[0] + 2, end[0]
        return textwrap.dedent("\n".join(lines[start[0] + 1:end[0]])), first, last
    node = ast.parse("\n".join(lines))
    for part in name.split("."):
        found = [n for n in ast.iter_child_nodes(node)
                 if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and n.name == part]
        if not found:
            raise DocsError(f"{ref}: no function or class {part!r} in {path}")
        node = found[0]
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return textwrap.dedent("\n".join(lines[first - 1:node.end_lineno])), first, node.end_lineno


def render_block(ref):
    code, first, last = find(ref)
    path = re.split(r"[:#]", ref, maxsplit=1)[0]
    return f"```python\n{code}\n```\n<sub>{path}, lines {first}–{last}</sub>\n"


def render_options(module):
    """A command's synopsis and a table of its options, from the module's parser()."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    try:
        p = importlib.import_module(module).parser()
    except (ImportError, AttributeError) as e:
        raise DocsError(f"options {module}: expected a module with a parser() function ({e})") from None
    rows, required = [], []
    for a in p._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        if a.nargs == 0:                                       # a flag
            arg = ""
        elif a.choices:
            arg = " {" + ",".join(map(str, a.choices)) + "}"
        else:
            arg = " " + (a.metavar or a.dest.upper())
        names = ", ".join(f"`{o}{arg}`" for o in a.option_strings)
        rows.append(f"| {names} | {'required: ' if a.required else ''}{a.help or ''} |")
        if a.required:
            required.append(f"{a.option_strings[0]}{arg}")
    synopsis = " ".join([p.prog] + required + ["[options]"])
    return "```\n" + synopsis + "\n```\n\n| option | meaning |\n|---|---|\n" + "\n".join(rows) + "\n"


def render(text):
    text = BLOCK.sub(lambda m: m.group(1) + render_block(m.group("ref")) + m.group(4), text)
    return OPTIONS.sub(lambda m: m.group(1) + render_options(m.group("module")) + m.group(4), text)


def pages():
    return sorted(os.path.join(DOCS, f) for f in os.listdir(DOCS) if f.endswith(".md"))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python docs/sync.py", description="Copy the package's code and the tools' "
                                "options into the pages of docs/ (the blocks between the markers), rewriting the "
                                "pages that are out of date.")
    p.add_argument("--check", action="store_true", help="only say which pages are out of date (exit 1 if any); "
                                                        "write nothing")
    check = p.parse_args(argv).check
    stale = []
    for page in pages():
        text = open(page, encoding="utf-8").read()
        new = render(text)
        if new != text:
            stale.append(os.path.relpath(page, ROOT))
            if not check:
                with open(page, "w", encoding="utf-8") as f:
                    f.write(new)
    if stale:
        print(("out of date: " if check else "updated: ") + ", ".join(stale))
    return 1 if (check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
