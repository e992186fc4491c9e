"""devicecloud's load generator: one command per scenario, a runner for repeats, JSON results.

From the repository's root::

    .venv/bin/python -m bench.loadgen ws-updates                 # (b) 1,000 devices, 4 in flight
    .venv/bin/python -m bench.loadgen ws-rate --rate 2000        # (c-ws) latency at 2,000/s
    .venv/bin/python -m bench.loadgen register --clients 100     # (e) registerMac per second
    .venv/bin/python -m bench.loadgen push --devices 10          # (f) REST write -> WS push
    .venv/bin/python -m bench.loadgen ws-updates --repeat 3      # median of three runs
    .venv/bin/python -m bench.loadgen smoke                      # every scenario, tiny (CI)

Without `--url` each run starts its own `python -m devicecloud serve` (free port, temporary
data dir) and stops it afterwards. From Python (e.g. a test): `bench.loadgen.smoke()`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from bench.base import Context, Params, Scenario
from bench.net import Sources
from bench.scenarios import SCENARIOS
from bench.server import server_under_test
from bench.stats import CpuWindow, Progress, machine_info, wait_for_quiet

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_RUNNER_OPTIONS = ("url", "server_pid", "repeat", "smoke", "out", "sources", "py_spy",
                   "py_spy_seconds", "py_spy_native", "wait_quiet", "quiet", "scenario",
                   "server_arg")
T = TypeVar("T")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _lookup(doc: dict[str, Any], dotted: str) -> Any:
    """`doc["a"]["b"]` for "a.b"; None when a part is missing (e.g. a run without baseline)."""
    for key in dotted.split("."):
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def _median(values: Iterable[Any]) -> Any:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:,}"


def _py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """Runs `py-spy record` against the server for (part of) the measurement window."""

    def __init__(self, path: Path, max_seconds: float, native: bool = False) -> None:
        self.path = path
        self.max_seconds = max_seconds
        self.native = native
        self.process: asyncio.subprocess.Process | None = None
        self.error: str | None = None

    async def start(self, pid: int, seconds: float) -> None:
        tool = _py_spy()
        if tool is None:
            self.error = "py-spy is not installed"
            return
        suffix = self.path.suffix.lower()
        kind = {".svg": "flamegraph", ".json": "speedscope"}.get(suffix, "raw")
        duration = max(1, math.floor(min(seconds, self.max_seconds)))
        self.process = await asyncio.create_subprocess_exec(
            tool, "record", "--pid", str(pid), "--duration", str(duration), "--rate", "100",
            "--format", kind, "--threads", "--function", "--output", str(self.path),
            *(["--native"] if self.native else []),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    async def wait(self) -> None:
        if self.process is None:
            return
        try:
            _, stderr = await asyncio.wait_for(self.process.communicate(), 60)
        except TimeoutError:
            self.process.kill()
            self.error = "py-spy did not finish"
            return
        if self.process.returncode != 0:
            self.error = stderr.decode(errors="replace")[-500:]


async def run_once(scenario: Scenario, params: Params, *, url: str | None,
                   server_pid: int | None, sources: int, server_args: tuple[str, ...] = (),
                   label: str, quiet: bool, profile: Path | None,
                   profile_seconds: float, native: bool = False) -> dict[str, Any]:
    """One run of a scenario against a server of its own (or `url`)."""
    progress = Progress(label, quiet)
    started_at = _now()
    started = time.perf_counter()
    progress.start()
    profiler = Profiler(profile, profile_seconds, native) if profile is not None else None
    pending: list[asyncio.Task[None]] = []
    try:
        async with server_under_test(url, pid=server_pid,
                                     args=(*scenario.server_args, *server_args),
                                     tls=bool(params.get("tls"))) as target:
            cpu = CpuWindow(target.pid)

            def window_opened(seconds: float) -> None:
                cpu.open()
                if profiler is not None and target.pid is not None:
                    pending.append(asyncio.create_task(profiler.start(target.pid, seconds)))

            context = Context(target, Sources(sources), progress, window_opened, cpu.close)
            metrics = await scenario.run(context, params)
            cpu.close()
            if pending:
                await asyncio.gather(*pending)
            if profiler is not None:
                progress.status = lambda: "waiting for py-spy"
                await profiler.wait()
            progress.status = lambda: "stopping"
    finally:
        await progress.stop()
    run: dict[str, Any] = {
        "started_at": started_at,
        "ended_at": _now(),
        "wall_s": round(time.perf_counter() - started, 3),
        **metrics,
        "cpu": cpu.result,
        "server": {"url": target.url, "managed": target.managed, "pid": target.pid,
                   "exit_code": target.exit_code},
    }
    if profiler is not None:
        run["profile"] = {"path": str(profiler.path), "error": profiler.error}
    progress.say(_run_line(scenario, run))
    return run


def _run_line(scenario: Scenario, run: dict[str, Any]) -> str:
    values = ", ".join(f"{key} {_fmt(_lookup(run, key))}" for key in scenario.headline)
    cpu = ", ".join(f"{k} {v}" for k, v in (run.get("cpu") or {}).items())
    return f"done: {values}; errors {run['errors']}; cpu {cpu or 'n/a'}"


async def run_scenario(scenario: Scenario, params: Params, *, url: str | None = None,
                       server_pid: int | None = None, repeat: int = 1, sources: int = 8,
                       quiet: bool = False,
                       profile: Path | None = None, profile_seconds: float = 15.0,
                       native: bool = False, wait_quiet: float = 0.0,
                       command: str = "", server_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run a scenario `repeat` times; the result holds every run and the median of each
    headline figure."""
    machine = machine_info()
    started_at = _now()
    runs = []
    for index in range(repeat):
        path = profile
        if profile is not None and repeat > 1:
            path = profile.with_name(f"{profile.stem}-run{index + 1}{profile.suffix}")
        busy_before = await wait_for_quiet(wait_quiet) if wait_quiet > 0 else None
        runs.append(await run_once(
            scenario, params, url=url, server_pid=server_pid, sources=sources, quiet=quiet,
            profile=path, server_args=server_args,
            profile_seconds=profile_seconds, native=native,
            label=f"{scenario.name} {index + 1}/{repeat}"))
        runs[-1]["machine_busy_before_cores"] = busy_before
    median = {key: _median(_lookup(run, key) for run in runs)
              for key in (*scenario.headline, "errors")}
    return {
        "scenario": scenario.name,
        "letter": scenario.letter,
        "summary": scenario.summary,
        "command": command,
        "parameters": params,
        "repeat": repeat,
        "started_at": started_at,
        "ended_at": _now(),
        "median": median,
        "runs": runs,
        "machine": machine,
    }


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    result: T = uvloop.run(coroutine)
    return result


# A tiny fleet at full speed sends far more a device than any device does: the smoke runs
# check the harness, not device.messages.
SMOKE_SERVER_ARGS = ("--limit", "device.messages=off")


def smoke(url: str | None = None, scenarios: Iterable[str] | None = None,
          quiet: bool = True) -> dict[str, dict[str, Any]]:
    """Run every scenario (or the named ones) tiny; raise AssertionError unless each one
    completed operations without errors. For CI: `bench.loadgen.smoke()`."""
    names = list(scenarios) if scenarios is not None else list(SCENARIOS)
    results = {}
    for name in names:
        scenario = SCENARIOS[name]
        parser = argparse.ArgumentParser()
        scenario.add_arguments(parser)
        params = {**vars(parser.parse_args([])), **scenario.smoke}
        result = _run(run_scenario(scenario, params, url=url, quiet=quiet,
                                   command=f"smoke {name}", server_args=SMOKE_SERVER_ARGS))
        check(result)
        results[name] = result
    return results


def check(result: dict[str, Any]) -> None:
    """AssertionError unless every run (and its baseline) did some operations and none
    failed."""
    for run in result["runs"]:
        for measured in (run, run.get("baseline")):
            if measured is None:
                continue
            assert measured["ops"] > 0, f"{result['scenario']}: nothing completed: {measured}"
            assert measured["errors"] == 0, \
                f"{result['scenario']}: errors: {measured['first_error']}"


def _runner_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("runner")
    group.add_argument("--url", help="a running devicecloud (loopback only); default: start one")
    group.add_argument("--server-pid", type=int,
                       help="with --url: the server's process id, for CPU figures and --py-spy")
    group.add_argument("--repeat", type=int, default=1, help="runs; the median is reported")
    group.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                       help="an argument for the server we start, repeated for each: "
                            "--server-arg=--bus-url --server-arg=redis://127.0.0.1:6379/0")
    group.add_argument("--smoke", action="store_true",
                       help="tiny: a few devices for about a second (CI keeps the harness working)")
    group.add_argument("--out", type=Path,
                       help="result JSON (default bench/results/<scenario>-<time>.json; "
                            "none for --smoke)")
    group.add_argument("--sources", type=int, default=8,
                       help="source addresses 127.0.0.2, 127.0.0.3, ... to spread sockets over")
    group.add_argument("--py-spy", type=Path, metavar="PATH",
                       help="profile the server with py-spy during the window: .svg flame graph, "
                            ".json speedscope, anything else raw collapsed stacks")
    group.add_argument("--py-spy-seconds", type=float, default=15.0,
                       help="longest profile (default 15 s)")
    group.add_argument("--py-spy-native", action="store_true",
                       help="include C frames (the garbage collector, uvloop, sqlite3)")
    group.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                       help="before each run wait up to SECONDS for the machine to be nearly "
                            "idle (under 0.3 busy cores); for shared machines")
    group.add_argument("--quiet", action="store_true", help="no progress lines")


def build_parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m bench.loadgen",
                                  description="devicecloud load generator")
    commands = top.add_subparsers(dest="scenario", required=True)
    for scenario in SCENARIOS.values():
        sub = commands.add_parser(scenario.name, help=f"({scenario.letter}) {scenario.summary}",
                                  description=scenario.summary)
        scenario.add_arguments(sub)
        _runner_arguments(sub)
    every = commands.add_parser("smoke", help="every scenario, tiny; exit status 1 on failure")
    every.add_argument("--url", help="a running devicecloud; default: start one per scenario")
    every.add_argument("--quiet", action="store_true", help="no progress lines")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "python -m bench.loadgen " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.scenario == "smoke":
        try:
            results = smoke(args.url, quiet=args.quiet)
        except AssertionError as failure:
            print(f"smoke FAILED: {failure}", file=sys.stderr)
            return 1
        for name, result in results.items():
            print(f"smoke ok: {name}: {result['median']}")
        return 0
    scenario = SCENARIOS[args.scenario]
    params = {k: v for k, v in vars(args).items() if k not in _RUNNER_OPTIONS}
    if args.smoke:
        params.update(scenario.smoke)
    result = _run(run_scenario(
        scenario, params, url=args.url, server_pid=args.server_pid, repeat=args.repeat,
        sources=args.sources, quiet=args.quiet, profile=args.py_spy,
        profile_seconds=args.py_spy_seconds, native=args.py_spy_native,
        wait_quiet=args.wait_quiet, command=command,
        server_args=(*(SMOKE_SERVER_ARGS if args.smoke else ()), *args.server_arg)))
    result["smoke"] = args.smoke
    out = args.out
    if out is None and not args.smoke:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        out = RESULTS_DIR / f"{scenario.name}-{stamp}.json"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    _print_summary(scenario, result, out)
    if args.smoke:
        try:
            check(result)
        except AssertionError as failure:
            print(f"smoke FAILED: {failure}", file=sys.stderr)
            return 1
    return 0


def _print_summary(scenario: Scenario, result: dict[str, Any], out: Path | None) -> None:
    print(f"{scenario.name} ({scenario.letter}), {result['repeat']} run(s):")
    for key in (*scenario.headline, "errors"):
        each = ", ".join(_fmt(_lookup(run, key)) for run in result["runs"])
        print(f"  {key:32} median {_fmt(result['median'][key]):>12}   runs: {each}")
    for key in ("loadgen_cores", "server_cores", "other_cores"):
        values = [(run.get("cpu") or {}).get(key) for run in result["runs"]]
        if all(v is not None for v in values):
            print(f"  {'cpu.' + key:32} {'':19}   runs: {', '.join(map(str, values))}")
    if out is not None:
        print(f"  result: {out}")


if __name__ == "__main__":
    sys.exit(main())
