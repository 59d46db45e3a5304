"""Run command-line entry points the way users start them, all in one subprocess (the heavy imports happen
once). The subprocess starts from `python -c` in a scratch folder with only the repository on PYTHONPATH:
under pytest, tests/ is on sys.path and tests/convert would be imported as the `convert` package."""

from __future__ import annotations

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Each job: {"kind": "module" | "script" | "entry" | "exec" | "convert_args", ...}; prints one JSON line of results.
_DRIVER = r'''
import contextlib, importlib, io, json, os, runpy, sys

def run(job):
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    out = io.StringIO()
    code = None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            kind = job["kind"]
            if kind == "module":  # python -m MODULE ARGS
                sys.argv = [job["module"], *job["argv"]]
                runpy.run_module(job["module"], run_name="__main__", alter_sys=True)
            elif kind == "script":  # python PATH ARGS: the script's folder first on sys.path, as Python does
                sys.argv = [job["path"], *job["argv"]]
                sys.path.insert(0, os.path.dirname(os.path.abspath(job["path"])))
                runpy.run_path(job["path"], run_name="__main__")
            elif kind == "entry":  # a console script: sys.exit(func()) with sys.argv = [name, ARGS]
                module, func = job["target"].split(":")
                sys.argv = [job["name"], *job["argv"]]
                code = getattr(importlib.import_module(module), func)()
            elif kind == "exec":  # a snippet's code; prints where its top-level packages came from
                exec(job["code"], {})
                for name in job["report"]:
                    print(name, importlib.import_module(name).__file__)
            elif kind == "convert_args":  # a converter's own argument parsing, without converting
                mod = importlib.import_module(job["module"])
                mod.run_cli = lambda spec, args, inputs, options: {}
                sys.argv = [job["module"], *job["argv"]]
                mod.main(job["argv"])
    except SystemExit as e:
        code = e.code
    except BaseException as e:  # report, do not stop the other jobs
        code = f"{type(e).__name__}: {e}"
    finally:
        sys.argv[:], sys.path[:] = saved_argv, saved_path
    code = 0 if code is None else code if isinstance(code, (int, str)) else repr(code)  # sys.exit(dict): 1
    return {"code": code, "output": out.getvalue()[-2000:]}

jobs = json.loads(sys.stdin.read())
print("\nRESULTS " + json.dumps([run(job) for job in jobs]))
'''


def run_jobs(jobs: list[dict], cwd: str) -> list[dict]:
    """The exit code (0, an int, or 'ExceptionType: message') and the last output of each job."""
    env = {**os.environ, "PYTHONPATH": REPO, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", _DRIVER], input=json.dumps(jobs), capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)
    marker = proc.stdout.rfind("\nRESULTS ")
    assert marker >= 0, f"driver failed: {proc.stderr[-3000:]}"
    return json.loads(proc.stdout[marker + len("\nRESULTS "):])
