"""The ``wmlab`` command line: a thin layer over :mod:`wmlab.api`.

Every command takes ``key=value`` arguments (``a.b.c=value`` for nested keys); ``--help`` after a command
lists its keys with their defaults and meaning.

    wmlab collect env=dmc:walker_walk episodes=20 out=data/walker
    wmlab train world_model data=data/walker run_dir=runs/walker preset=small
    wmlab eval runs/walker
    wmlab data info data/walker
    wmlab data import src=videos/ out=data/videos size=64,64
    wmlab data export data/walker out=exports/walker format=dreamer
    wmlab data verify data/walker
    wmlab train dreamer env=dmc:walker_walk run_dir=runs/walker_dv3
    wmlab train pretrain method=apv data=videos/ run_dir=runs/pre_apv
    wmlab compare runs/walker_dv3 runs/walker_apv out=curves.png [reference=dmc_vision-dreamerv3.json.gz]
    wmlab generate runs/coinrun_genie method=one_go frames=10 out=gen.mp4
    wmlab play runs/coinrun_genie start=data/coinrun ui=terminal realtime=true
    wmlab quickstart
    wmlab bench store
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from wmlab.config import ConfigError, MissingDependencyError, describe, parse_overrides

USAGE = __doc__


def _split(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """Positional arguments and key=value overrides."""
    positional = [a for a in args if "=" not in a and not a.startswith("-")]
    return positional, parse_overrides([a for a in args if "=" in a])


def _wants_help(args: list[str]) -> bool:
    return "--help" in args or "-h" in args


def _print_keys(cfg: Any, title: str) -> None:
    print(title)
    for key, value, doc in describe(cfg):
        print(f"  {key}={value!s:<20} {doc}")


def _print(result: Any) -> None:
    if result is None:
        return
    if isinstance(result, (dict, list)):
        print(json.dumps(result, indent=2, default=str, ensure_ascii=False))
    else:
        print(result)


def cmd_collect(args: list[str]) -> Any:
    from wmlab import api

    if _wants_help(args):
        _print_keys(api.CollectConfig(), "wmlab collect key=value ...")
        return None
    _, kv = _split(args)
    return api.collect(**kv)


def cmd_train(args: list[str]) -> Any:
    from wmlab import api, jobs

    positional, kv = _split(args)
    if not positional and _wants_help(args):
        print(f"wmlab train <job> key=value ...  jobs: {', '.join(jobs.names())}\n"
              f"`wmlab train <job> --help` lists the job's keys and presets.")
        return None
    if not positional:
        raise ConfigError(f"wmlab train needs a job name: one of {', '.join(jobs.names())}")
    if _wants_help(args):
        job = jobs.get(positional[0])
        _print_keys(job.config_cls(), f"wmlab train {positional[0]} key=value ...  presets: {', '.join(job.presets)}")
        return None
    return api.train(positional[0], **kv)


def cmd_eval(args: list[str]) -> Any:
    from wmlab import api, jobs

    positional, kv = _split(args)
    if _wants_help(args):
        if positional:  # the keys of that run's job
            job = jobs.get(api.run_info(Path(positional[0]))["job"])
            _print_keys(job.config_cls().eval, f"wmlab eval {positional[0]} key=value ...")
            return None
        print("wmlab eval <run_dir> [<run_dir> ...] key=value ...  (the keys override the runs' eval settings; "
              "several dreamer runs are pooled per setting: mean ± std over seeds)")
        for name in jobs.names():
            job = jobs.get(name)
            if job.evaluate is not None:
                _print_keys(job.config_cls().eval, f"\n{name} runs:")
        return None
    if len(positional) > 1:  # several runs: each evaluated, then pooled over seeds
        if "run_dir" in kv:
            raise ConfigError(f"give the run folders as arguments or one run_dir={kv['run_dir']}, not both")
        return api.evaluate(positional, **kv)
    run_dir = _run_dir(positional, kv, "usage: wmlab eval <run_dir> [<run_dir> ...] [key=value ...]")
    return api.evaluate(run_dir, **kv)


DATA_USAGE = """wmlab data {info,import,export,verify} [PATH] [key=value ...]
  info PATH                          episodes, steps, splits and per-key statistics of a store
  import SRC out=STORE [size=H,W] [format=] [split=] [skip_existing=true] [format options]
  export STORE out=DIR [format=dreamer] [format options]
  verify PATH                        every corrupt or inconsistent episode, by file name
`wmlab data import --help` and `wmlab data export --help` list each format's options."""


def _data_help(verb: str | None) -> None:
    if verb not in ("import", "export"):
        print(DATA_USAGE)
        return
    from wmlab.data.formats import describe_formats

    print(DATA_USAGE.splitlines()[2 if verb == "import" else 3].strip())
    for name, options in describe_formats()[verb].items():
        keys = "  ".join(f"{k}={v}" for k, v in options.items()) or "(no options)"
        print(f"  format={name:<8} {keys}")


def _call_checked(fn: Callable[..., Any], verb: str, kv: dict[str, Any]) -> Any:
    """``fn(**kv)``, with a missing or unknown key reported as a one-line error naming it."""
    import inspect

    params = inspect.signature(fn).parameters
    named = [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for key in kv:
            if key not in params:
                raise ConfigError(f"`data {verb}` has no key {key!r}; keys: {', '.join(named)}")
    for name in named:
        if params[name].default is inspect.Parameter.empty and name not in kv:
            raise ConfigError(f"`data {verb}` needs {name}= (see wmlab data --help)")
    return fn(**kv)


def cmd_data(args: list[str]) -> Any:
    from wmlab import api

    positional, kv = _split(args)
    verbs = ("info", "import", "export", "verify")
    if _wants_help(args):
        _data_help(positional[0] if positional else None)
        return None
    if not positional or positional[0] not in verbs:
        raise ConfigError(f"usage: wmlab data {{{','.join(verbs)}}} [PATH] [key=value ...] (see wmlab data --help)")
    verb, rest = positional[0], positional[1:]
    if rest:
        kv.setdefault("src" if verb == "import" else "data", rest[0])
    if verb == "info":
        return _call_checked(api.data_info, verb, kv)
    if verb == "import":
        return _call_checked(api.data_import, verb, kv)
    if verb == "export":
        return _call_checked(api.data_export, verb, kv)
    problems = _call_checked(api.data_verify, verb, kv)
    for p in problems:
        print(p, file=sys.stderr)
    print(f"{len(problems)} problem(s) found")
    return 1 if problems else 0


def cmd_quickstart(args: list[str]) -> Any:
    from wmlab import api

    if _wants_help(args):
        from wmlab.quickstart import QuickstartConfig

        _print_keys(QuickstartConfig(), "wmlab quickstart key=value ...")
        return None
    _, kv = _split(args)
    return api.quickstart(**kv)


def cmd_compare(args: list[str]) -> Any:
    from wmlab.eval.curves import compare

    positional, kv = _split(args)
    if not positional:
        raise ConfigError("usage: wmlab compare <run_dir> [<run_dir> ...] [out=curves.png] [key=eval/return_mean] "
                          "[reference=<published scores .json(.gz)>] [reference_gap=<env steps>] "
                          "[baseline=<part of a label>]")
    return compare(positional, kv.pop("out", "curves.png"), **kv)


def cmd_generate(args: list[str]) -> Any:
    from wmlab import api

    if _wants_help(args):
        _print_keys(api.GenerateConfig(), "wmlab generate <run_dir> key=value ...")
        return None
    positional, kv = _split(args)
    run_dir = _run_dir(positional, kv, "usage: wmlab generate <run_dir> [episode=] [start=0] [prompt=4] "
                       "[frames=10] [actions=1,1,7,...] [method=autoregressive|one_go] [steps=] [temperature=] "
                       "[out=<mp4>]")
    return api.generate(run_dir, **kv)


def cmd_play(args: list[str]) -> Any:
    from wmlab.play import PlayConfig, play_run

    if _wants_help(args):
        _print_keys(PlayConfig(), "wmlab play <run_dir> key=value ...  (keys: q quit, r restart)")
        return None
    positional, kv = _split(args)
    run_dir = _run_dir(positional, kv, "usage: wmlab play <run_dir> [start=<store or image>] [ui=auto] "
                       "[actions=1,1,7] ...")
    return play_run(run_dir, **kv)


def cmd_bench(args: list[str]) -> Any:
    from wmlab import api

    positional, kv = _split(args)
    if _wants_help(args):
        scripts = api.benchmarks(positional)
        if positional:  # each named script's own options
            for script in scripts.values():
                subprocess.call([sys.executable, str(script), "--help"])
            return None
        print("wmlab bench [name ...] [key=value ...]  (all when none is named; key=value becomes --key=value)")
        for name, script in scripts.items():
            print(f"  {name:<12} {_first_line(script)}")
        print("`wmlab bench <name> --help` lists a benchmark's options.")
        return None
    return api.bench(positional, **kv)


def _first_line(script: Path) -> str:
    """The first line of a script's docstring."""
    import ast

    doc = ast.get_docstring(ast.parse(script.read_text())) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _run_dir(positional: list[str], kv: dict[str, Any], usage: str) -> str:
    """The run folder of eval/generate/play: the one positional argument, or ``run_dir=``."""
    given = kv.pop("run_dir", None)
    if given is not None and positional:
        raise ConfigError(f"give the run folder once, as {positional[0]} or run_dir={given}, not both")
    if given is not None:
        return str(given)
    if len(positional) != 1:
        raise ConfigError(usage)
    return positional[0]


COMMANDS: dict[str, Callable[[list[str]], Any]] = {
    "collect": cmd_collect,
    "train": cmd_train,
    "eval": cmd_eval,
    "data": cmd_data,
    "quickstart": cmd_quickstart,
    "compare": cmd_compare,
    "generate": cmd_generate,
    "play": cmd_play,
    "bench": cmd_bench,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"wmlab: unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        result = command(argv[1:])
    except (ConfigError, ValueError, FileNotFoundError, KeyError, MissingDependencyError) as e:
        # User errors: one line naming the bad value and the fix, no traceback (WMLAB_DEBUG=1 shows it).
        if os.environ.get("WMLAB_DEBUG"):
            raise
        msg = str(e.args[0] if isinstance(e, KeyError) and e.args else e)
        if "Original Traceback" in msg:  # raised in a DataLoader worker: its own message is the last line
            msg = msg.strip().splitlines()[-1].split(": ", 1)[-1]
        print(f"wmlab {argv[0]}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        return _closed_pipe()
    if isinstance(result, int) and not isinstance(result, bool):
        return result
    try:
        _print(result)
    except BrokenPipeError:
        return _closed_pipe()
    return 0


def _closed_pipe() -> int:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not raise again
    return 0


if __name__ == "__main__":
    sys.exit(main())
