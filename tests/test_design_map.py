"""docs/DESIGN.md's "## Layout" block is the map a newcomer reads first: every module under recipe/, and every
top-level .py file of convert/ and bench/, must be named in it, and every recipe/ and bench/ file it names must
exist. A moved, added or removed module fails here until the map says so."""

import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def layout_entries() -> list[tuple[str, set[str]]]:
    """(folder, tokens) per entry of the Layout block. An entry starts on a line indented by 0 (a top folder such
    as `convert/`) or 2 (inside `recipe/`) and continues on the more indented lines below it. Its folder is what
    its first token names (`model/`, `eval/tasks/`, `eval/sampling.py` -> `eval/`), relative to the repo root."""
    text = open(os.path.join(REPO, "docs", "DESIGN.md"), encoding="utf-8").read()
    block = re.search(r"^## Layout\n```\n(.*?)^```", text, flags=re.S | re.M)
    assert block, "docs/DESIGN.md has no '## Layout' code block"
    entries, top = [], ""
    for line in block.group(1).splitlines():
        indent = len(line) - len(line.lstrip(" "))
        tokens = [t for t in re.split(r"[\s(),;:`+]+", line) if t]
        if not tokens:
            continue
        if indent == 0:
            top = tokens[0] if tokens[0].endswith("/") else ""
            entries.append((top, set(tokens[1:])))
        elif indent == 2:
            first = tokens[0]
            entries.append((top + (first if first.endswith("/") else os.path.dirname(first) + "/").lstrip("/"),
                            set(tokens)))
        else:
            entries[-1][1].update(tokens)
    return entries


def named(entries, path: str) -> bool:
    """`path` (repo-relative) is named by an entry of its own folder, by file name or by its path in the entry's
    top folder (`eval/run.py` in an `eval/...` entry of recipe/)."""
    folder, name = os.path.dirname(path) + "/", os.path.basename(path)
    top = path.split("/")[0] + "/"
    return any(name in tokens and f == folder or path[len(top):] in tokens and f.startswith(top)
               for f, tokens in entries)


def modules(root: str, recursive: bool) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(os.path.join(REPO, root)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__") if recursive else []
        found += [os.path.relpath(os.path.join(folder, f), REPO) for f in sorted(files)
                  if f.endswith(".py") and f != "__init__.py"]
    return found


def test_every_recipe_module_is_on_the_map():
    entries = layout_entries()
    missing = [m for m in modules("recipe", recursive=True) if not named(entries, m)]
    assert not missing, f"docs/DESIGN.md's Layout block does not name: {', '.join(missing)}"


def test_every_convert_and_bench_script_is_on_the_map():
    entries = layout_entries()
    missing = [m for root in ("convert", "bench") for m in modules(root, recursive=False)
               if not any(f == os.path.dirname(m) + "/" and os.path.basename(m) in tokens for f, tokens in entries)]
    assert not missing, f"docs/DESIGN.md's Layout block does not name: {', '.join(missing)}"


def test_every_named_recipe_and_bench_file_exists():
    stale = []
    for folder, tokens in layout_entries():
        top = folder.split("/")[0]
        if top not in ("recipe", "bench"):
            continue
        for token in (t for t in tokens if t.endswith(".py")):
            token = token.removeprefix(f"{top}/")
            if not (os.path.exists(os.path.join(REPO, folder, token)) or os.path.exists(os.path.join(REPO, top, token))):
                stale.append(f"{folder}{token}")
    assert not stale, f"docs/DESIGN.md's Layout block names files that do not exist: {', '.join(stale)}"
