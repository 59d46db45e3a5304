"""The commands in README.md and docs/*.md (fenced shell blocks) and in the comments of yamls/*.yaml keep
working, and their links keep pointing somewhere.

Every command is checked without training or converting anything:
- training (`composer ... recipe/train.py`, `flamingo-train`, `python recipe/train.py`): the YAML is loaded with
  the command's overrides and `recipe.config.validate` runs, as on the machine the command is meant for
  (`composer -n N`: N GPUs, so CUDA is taken as present and WORLD_SIZE is set). Local paths that validation
  requires to exist are created in a scratch folder (absolute ones moved under it), nothing else is faked;
- converters, eval, export, bench: `--help` exits 0, run as the command runs (script file, module or console
  script); a converter also parses the command's own arguments, and eval parses its config;
- `make X`: the Makefile has target X; `bash X.sh`: `bash -n` passes.
Commands that cannot run offline or are not commands of this repository are in SKIPPED with the reason.
Export itself runs on CPU in tests/train/test_released_models.py.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess

import pytest

from cli_runner import REPO, run_jobs

DOCS = ["README.md"] + sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))
YAMLS = sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "yamls", "*.yaml")))

# Command start (after VAR=value prefixes) -> why it is not run here.
SKIPPED = {
    "pip install": "downloads packages from the registry",
    ". .venv/bin/activate": "changes the calling shell only",
    "git archive": "needs a commit of the user's choosing",
}

CONVERTERS = {"laion": "convert.laion_to_mds", "mmc4": "convert.mmc4_to_mds", "chatgpt": "convert.chatgpt_to_mds",
              "jsonl": "convert.jsonl_to_mds"}
CONSOLE = {"flamingo-train": "recipe.train", "flamingo-eval": "recipe.eval", "flamingo-export": "recipe.export",
           **{f"flamingo-convert-{short}": module for short, module in CONVERTERS.items()}}
# composer launcher flags that take a value (the rest of its flags are switches)
LAUNCHER_VALUE_FLAGS = {"-n", "--nproc", "--world_size", "--base_rank", "--node_rank", "--master_addr",
                        "--master_port", "--stdout", "--stderr"}


# ------------------------------------------------------------------------------------------------ extraction

def _logical_lines(lines):
    """Join backslash continuations."""
    buf = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        yield (buf + line).strip()
        buf = ""
    if buf.strip():
        yield buf.strip()


def markdown_blocks(path: str) -> list[tuple[str, list[str]]]:
    """(language, lines) of every fenced block."""
    blocks, lang, lines = [], None, []
    for line in open(os.path.join(REPO, path), encoding="utf-8"):
        fence = re.match(r"^```(\w*)\s*$", line.strip())
        if fence and lang is None:
            lang, lines = fence.group(1), []
        elif line.strip() == "```" and lang is not None:
            blocks.append((lang, lines))
            lang = None
        elif lang is not None:
            lines.append(line.rstrip("\n"))
    return blocks


def markdown_commands(path: str) -> list[str]:
    return [cmd for lang, lines in markdown_blocks(path) if lang in ("bash", "sh", "shell", "console")
            for cmd in _logical_lines(lines) if cmd and not cmd.startswith("#")]


COMMAND_START = re.compile(r"^(composer|python3?|flamingo-[\w-]+|make|pip|bash)\s")


def yaml_commands(path: str) -> list[str]:
    """Comment lines such as `#   composer -n 8 recipe/train.py yamls/x.yaml key=value \\` and their
    continuations."""
    commands, pending = [], None
    for line in open(os.path.join(REPO, path), encoding="utf-8"):
        indented = re.match(r"^\s*#\s{2,}(\S.*)$", line)  # commands are indented under their comment
        body = indented.group(1).strip() if indented else None
        if body is not None and (pending is not None or COMMAND_START.match(body)):
            pending = (pending or []) + [body]
            if not body.endswith("\\"):
                commands += list(_logical_lines(pending))
                pending = None
        else:
            pending = None
    return commands


def all_commands() -> list[tuple[str, str]]:
    return ([(doc, cmd) for doc in DOCS for cmd in markdown_commands(doc)]
            + [(yaml, cmd) for yaml in YAMLS for cmd in yaml_commands(yaml)])


COMMANDS = all_commands()


def _words(cmd: str) -> list[str]:
    words = shlex.split(cmd, comments=True)
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):  # VAR=value prefixes
        words.pop(0)
    return words


def classify(cmd: str) -> tuple[str, dict]:
    """(kind, details) of a documented command; kind 'unknown' fails the test."""
    words = _words(cmd)
    for start, reason in SKIPPED.items():
        if cmd.startswith(start) or " ".join(words).startswith(start):
            return "skip", {"reason": reason}
    head, rest = words[0], words[1:]
    if head == "make":
        return "make", {"targets": rest}
    if head == "bash" and rest and rest[0].endswith(".sh"):
        return "bash", {"path": rest[0]}
    if head == "composer":
        world, module, i = 1, False, 0
        while i < len(rest) and rest[i].startswith("-"):
            if rest[i] in ("-n", "--nproc"):
                world = world if world > 1 else int(rest[i + 1])
            if rest[i] == "--world_size":
                world = int(rest[i + 1])
            module |= rest[i] in ("-m", "--module_mode")
            i += 2 if rest[i] in LAUNCHER_VALUE_FLAGS else 1
        target, args = rest[i], rest[i + 1:]
        if module:
            return "help", {"job": {"kind": "module", "module": target, "argv": ["--help"]}}
        if target == "recipe/train.py":
            return "train", {"yaml": args[0], "overrides": args[1:], "world": world, "gpu": True}
        return "unknown", {}
    if head in ("python", "python3"):
        if rest[0] == "-m":
            module, args = rest[1], rest[2:]
        else:
            module, args = rest[0].removesuffix(".py").replace("/", "."), rest[1:]
            if not os.path.isfile(os.path.join(REPO, rest[0])):
                return "unknown", {"why": f"no such script: {rest[0]}"}
        job = ({"kind": "module", "module": module, "argv": ["--help"]} if rest[0] == "-m" else
               {"kind": "script", "path": os.path.join(REPO, rest[0]), "argv": ["--help"]})
        return _by_module(module, args, job)
    if head in CONSOLE:
        return _by_module(CONSOLE[head], rest, {"kind": "entry", "name": head, "target": _scripts()[head],
                                                "argv": ["--help"]})
    return "unknown", {}


def _by_module(module: str, args: list[str], job: dict) -> tuple[str, dict]:
    if module == "recipe.train":  # one process: validated on this machine, as the command would run here
        return "train", {"yaml": args[0], "overrides": args[1:], "world": 1, "gpu": False, "job": job}
    if module in ("recipe.eval", "recipe.eval.__main__"):
        return "eval", {"yaml": args[0], "overrides": args[1:], "job": job}
    if module in CONVERTERS.values():
        return "convert", {"module": module, "args": args, "job": job}
    if module in ("recipe.export", "recipe.data.inspection") or module.startswith("bench."):
        return "help", {"job": job}
    return "unknown", {}


def _scripts() -> dict:
    import tomllib
    return tomllib.load(open(os.path.join(REPO, "pyproject.toml"), "rb"))["project"]["scripts"]


# ------------------------------------------------------------------------------------------------ checks

def test_commands_were_found():
    docs = {doc for doc, _ in COMMANDS}
    assert {"README.md", "docs/preparing-data.md"} <= docs and any(d.startswith("yamls/") for d in docs)
    assert sum(classify(cmd)[0] == "train" for _, cmd in COMMANDS) >= 6


@pytest.mark.parametrize("where,cmd", COMMANDS, ids=[f"{d}:{c[:70]}" for d, c in COMMANDS])
def test_command_is_known(where, cmd):
    kind, details = classify(cmd)
    assert kind != "unknown", (f"{where}: `{cmd}` is no command this test can check {details.get('why', '')}; "
                               "teach classify() about it or list it in SKIPPED with the reason")


def _fake_root(tmp_path) -> str:
    root = tmp_path / "fake"
    root.mkdir(exist_ok=True)
    return str(root)


def _move_local_paths(words: list[str], root: str) -> list[str]:
    """Absolute local paths in `key=value` overrides or arguments -> the same path under `root` (created only
    if validation asks for it)."""
    def move(value: str) -> str:
        return root + value if value.startswith("/") and not os.path.exists(value) else value
    out = []
    for word in words:
        key, eq, value = word.partition("=")
        out.append(f"{key}={move(value)}" if eq and not word.startswith("-") else move(word))
    return out


MISSING = [  # validation's "must exist" errors -> (path, what to create)
    (re.compile(r"(?:image file|checkpoint file) does not exist: (\S+)$"), "file"),
    (re.compile(r"does not exist: (\S+)$"), "dir"),
    (re.compile(r"no index\.json in (\S+) \("), "index"),
]


def _validate_with_fakes(raw_fn, root: str):
    """Validate; each 'does not exist' / 'no index.json' error for a path under `root` (or relative, i.e.
    under the scratch working directory) creates that path and validates again."""
    from recipe.config import ConfigError, validate
    for _ in range(50):
        try:
            return validate(raw_fn())
        except ConfigError as e:
            message = str(e)
            for pattern, what in MISSING:
                found = pattern.search(message)
                if found:
                    break
            else:
                raise
            path = found.group(1)
            if os.path.isabs(path) and not path.startswith(root):
                raise  # a real path of this machine: not ours to fake
            if what == "dir":
                os.makedirs(path, exist_ok=True)
            elif what == "file":
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                open(path, "wb").close()
            else:
                with open(os.path.join(path, "index.json"), "w") as f:
                    f.write('{"version": 2, "shards": []}')
    raise AssertionError("too many missing paths")


TRAIN = [(w, c) for w, c in COMMANDS if classify(c)[0] == "train"]


@pytest.mark.parametrize("where,cmd", TRAIN, ids=[f"{d}:{c[:70]}" for d, c in TRAIN])
def test_training_command_config_validates(where, cmd, tmp_path, monkeypatch):
    import recipe.config as config
    _, d = classify(cmd)
    root = _fake_root(tmp_path)
    monkeypatch.chdir(tmp_path)  # relative paths (demo_out/..., runs/...) land in the scratch folder
    monkeypatch.setenv("WORLD_SIZE", str(d["world"]))
    if d["gpu"]:  # `composer -n N`: validated as on the N-GPU node it is written for
        monkeypatch.setattr(config.validation, "_cuda_available", lambda: True)
    yaml = os.path.join(REPO, d["yaml"])
    overrides = _move_local_paths(d["overrides"], root)
    try:
        _validate_with_fakes(lambda: config.load_config(yaml, overrides), root)
    except config.ConfigError as e:
        pytest.fail(f"{where}: `{cmd}`: config error: {e}")


EVAL = [(w, c) for w, c in COMMANDS if classify(c)[0] == "eval"]


@pytest.mark.parametrize("where,cmd", EVAL, ids=[f"{d}:{c[:70]}" for d, c in EVAL])
def test_eval_command_config_parses(where, cmd, tmp_path, monkeypatch):
    from recipe.config import ConfigError, load_config
    from recipe.eval.config import parse
    _, d = classify(cmd)
    monkeypatch.chdir(tmp_path)
    try:
        parse(load_config(os.path.join(REPO, d["yaml"]), d["overrides"]))
    except (ConfigError, ValueError) as e:
        pytest.fail(f"{where}: `{cmd}`: {e}")


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    """One subprocess for every `--help` and converter-argument job of the documented commands."""
    scratch = tmp_path_factory.mktemp("cli")
    root = os.path.join(scratch, "fake")
    jobs, keys = [], []
    for where, cmd in COMMANDS:
        kind, d = classify(cmd)
        if "job" in d:
            jobs.append(d["job"])
            keys.append((where, cmd, "help"))
        if kind == "convert":  # the command's own arguments, parsed by the converter; --image-dir must exist
            args = _move_local_paths(d["args"], root)
            for flag, value in zip(args, args[1:]):
                if flag == "--image-dir":
                    os.makedirs(value, exist_ok=True)
            jobs.append({"kind": "convert_args", "module": d["module"], "argv": args})
            keys.append((where, cmd, "args"))
    return dict(zip(keys, run_jobs(jobs, str(scratch))))


CLI = [(w, c) for w, c in COMMANDS if "job" in classify(c)[1]]


@pytest.mark.parametrize("where,cmd", CLI, ids=[f"{d}:{c[:70]}" for d, c in CLI])
def test_entry_point_help_and_arguments(where, cmd, cli_results):
    for (w, c, what), result in cli_results.items():
        if (w, c) == (where, cmd):
            assert result["code"] == 0, f"{where}: `{cmd}` ({what}): exit {result['code']}: {result['output']}"


MAKE_AND_BASH = [(w, c) for w, c in COMMANDS if classify(c)[0] in ("make", "bash")]


@pytest.mark.parametrize("where,cmd", MAKE_AND_BASH, ids=[f"{d}:{c[:70]}" for d, c in MAKE_AND_BASH])
def test_make_targets_and_shell_scripts_exist(where, cmd):
    """Not run (make demo trains for minutes, make test is the suite, make install downloads, gpu_suite.sh
    needs GPUs): the target exists, the script parses."""
    kind, d = classify(cmd)
    if kind == "make":
        makefile = open(os.path.join(REPO, "Makefile")).read()
        for target in d["targets"]:
            assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"{where}: no make target {target}"
    else:
        proc = subprocess.run(["bash", "-n", os.path.join(REPO, d["path"])], capture_output=True, text=True)
        assert proc.returncode == 0, f"{where}: {d['path']}: {proc.stderr}"


PYTHON_SNIPPETS = [(doc, "\n".join(lines)) for doc in DOCS for lang, lines in markdown_blocks(doc) if lang == "python"]


@pytest.mark.parametrize("where,code", PYTHON_SNIPPETS, ids=[d for d, _ in PYTHON_SNIPPETS])
def test_python_snippets_compile_and_import(where, code, tmp_path):
    """Their imports run in a subprocess: in this process tests/convert is the `convert` package."""
    compile(code, where, "exec")
    imports = [line for line in code.splitlines() if re.match(r"^(from \S+ )?import ", line)]
    packages = sorted({re.match(r"^(?:from|import) (\w+)", line).group(1) for line in imports})
    [result] = run_jobs([{"kind": "exec", "code": "\n".join(imports), "report": packages}], str(tmp_path))
    assert result["code"] == 0, f"{where}: {result['output']}"
    for package in packages:  # this checkout's code, not another installed copy
        assert f"{package} {REPO}{os.sep}{package}{os.sep}" in result["output"], result["output"]


# ------------------------------------------------------------------------------------------------ links

def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: str) -> set[str]:
    text = re.sub(r"```.*?```", "", open(path, encoding="utf-8").read(), flags=re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}


LINKS = [(doc, m.group(1)) for doc in DOCS
         for m in re.finditer(r"\]\(([^)\s]+)\)", re.sub(r"```.*?```", "", open(os.path.join(REPO, doc)).read(),
                                                          flags=re.S))
         if not re.match(r"^[a-z]+:", m.group(1))]


@pytest.mark.parametrize("where,link", LINKS, ids=[f"{d}:{link}" for d, link in LINKS])
def test_relative_links_resolve(where, link):
    path, _, anchor = link.partition("#")
    target = os.path.normpath(os.path.join(REPO, os.path.dirname(where), path)) if path else os.path.join(REPO, where)
    assert os.path.exists(target), f"{where}: link to a missing file: {link}"
    if anchor:
        assert target.endswith(".md") and anchor in _anchors(target), f"{where}: no heading for #{anchor} ({link})"


SECTION_REFS = [(f, m.group(1)) for f in DOCS + YAMLS
                for m in re.finditer(r'README \(?"([^"]+)"', open(os.path.join(REPO, f)).read())]


@pytest.mark.parametrize("where,section", SECTION_REFS, ids=[f"{w}:{s}" for w, s in SECTION_REFS])
def test_readme_sections_named_elsewhere_exist(where, section):
    assert _slug(section) in _anchors(os.path.join(REPO, "README.md")), f'{where}: README has no section "{section}"'
