"""The README's tour, run as written: its commands, taken from the README's blocks marked
`<!-- tour: KIND -->`, against a fresh server, with only its ports changed (8000 and 1884 become
free ones), and each printed line compared with the line the README shows under the command.

A `# ...` line under a command is what that command prints (`...` is anything); `# the WebSocket
client shows: ...` is what the tour's WebSocket client prints meanwhile. The `websocket` block is
the interactive client: `>` lines are typed into it, `<` lines are what it prints back.
"""

from __future__ import annotations

import queue
import re
import shlex
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.server import Server

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"<!-- tour: (\w+) -->\n```sh\n(.*?)```", re.S)
EXAMPLE_TOKEN = "4fbb52fb5b6243e083377f45d216820f"
SERVE = "bash scripts/serve.sh --mqtt-port 1884"
WS_SHOWS = "the WebSocket client shows: "
ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\x1b[78]|\r")
DONE = "__tour_block_done__"
WITHIN = 10.0  # seconds for any one line to appear


def tour_blocks() -> list[tuple[str, str]]:
    return BLOCK.findall((ROOT / "README.md").read_text())


def commands(block: str) -> list[tuple[str, list[str]]]:
    """The block's commands (continued lines joined), each with the `# ` lines under it."""
    found: list[tuple[str, list[str]]] = []
    continued = ""
    for line in block.splitlines():
        if line.startswith("# "):
            found[-1][1].append(line[2:])
        elif line.endswith("\\"):
            continued += line[:-1]
        else:
            found.append((continued + line, []))
            continued = ""
    return found


class Lines:
    """The output of a child process, line by line, with every read bounded by a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(ESCAPES.sub("", line).strip())

    def next(self) -> str:
        try:
            line = self.lines.get(timeout=WITHIN)
        except queue.Empty:
            raise AssertionError(f"nothing more within {WITHIN} s; so far: {self.seen}") from None
        self.seen.append(line)
        return line

    def expect(self, pattern: re.Pattern[str]) -> str:
        """Read on until a line (less any `> ` prompts before it) matches `pattern`."""
        while True:
            line = self.next()
            while line.startswith(">"):
                line = line[1:].strip()
            if pattern.fullmatch(line):
                return line

    def send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


class Tour:
    """The tour's terminals: a shell for the commands and, once started, the WebSocket client."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.token: str | None = None
        self.shell = Lines(subprocess.Popen(["bash"], cwd=ROOT, text=True, stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        self.ws: Lines | None = None

    def command(self, text: str) -> str:
        """`text` on this server's ports."""
        return (text.replace("localhost:8000", f"localhost:{self.server.http_port}")
                .replace("-p 1884", f"-p {self.server.mqtt_port}"))

    def pattern(self, shown: str) -> re.Pattern[str]:
        """A README line of output as a pattern: `...` is anything, the example token is ours."""
        text = re.escape(self.command(shown)).replace(re.escape("..."), ".*")
        return re.compile(text.replace(EXAMPLE_TOKEN, self.token or "[0-9a-f]{32}"))

    def run_shell(self, block: str) -> None:
        """Run the block's commands one by one in the tour's shell; each must succeed and print
        the `# ` lines under it, in order."""
        for command, shown_lines in commands(block):
            output = self.run(command)
            printed = iter(output)
            for shown in shown_lines:
                if shown.startswith(WS_SHOWS):
                    assert self.ws is not None, "the WebSocket client is not running"
                    self.ws.expect(self.pattern(shown.removeprefix(WS_SHOWS)))
                    continue
                pattern = self.pattern(shown)
                assert any(pattern.fullmatch(line) for line in printed), (command, shown, output)
                if self.token is None and re.fullmatch("[0-9a-f]{32}", output[-1]):
                    self.token = output[-1]

    def run(self, command: str) -> list[str]:
        """What `command` prints (a newline ends what it printed last), once it succeeded."""
        self.shell.send(f"{self.command(command)}\nstatus=$?; echo; echo {DONE} $status")
        output: list[str] = []
        while not (line := self.shell.next()).startswith(DONE):
            if line:
                output.append(line)
        assert line == f"{DONE} 0", (command, output)
        return output

    def start_ws(self, block: str) -> None:
        """Start the interactive client; type each `>` line and wait for each `<` line."""
        assert self.token is not None, "the tour registers a device before it talks to /ws"
        first, *session = block.splitlines()
        self.ws = Lines(subprocess.Popen(shlex.split(self.command(first)), cwd=ROOT, text=True,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT))
        for line in session:
            if line.startswith("> "):
                self.ws.send(line[2:].replace(EXAMPLE_TOKEN, self.token))
            else:
                self.ws.expect(self.pattern(line))

    def close(self) -> None:
        self.shell.close()
        if self.ws is not None:
            self.ws.close()


@pytest.fixture
def tour_server(tmp_path: Path) -> Iterator[Server]:
    instance = Server(tmp_path / "data").start()
    yield instance
    assert instance.stop() == 0, instance.log()


def test_the_tour_is_marked_and_uses_no_port_another_broker_may_hold() -> None:
    blocks = tour_blocks()
    assert [kind for kind, _ in blocks] == ["serve", "shell", "websocket", "shell", "shell",
                                            "shell"]
    assert blocks[0][1].strip() == SERVE
    for _, block in blocks:
        assert "1883" not in block
        assert set(re.findall(r"localhost:(\d+)", block)) <= {"8000"}
        assert set(re.findall(r"-p (\d+)", block)) <= {"1884"}


def test_the_tour_works_as_written(tour_server: Server) -> None:
    for tool in ("curl", "mosquitto_sub", "mosquitto_pub"):
        if shutil.which(tool) is None:
            pytest.skip(f"the tour needs {tool} (apt-get install -y curl mosquitto-clients)")
    tour = Tour(tour_server)
    try:
        for kind, block in tour_blocks()[1:]:  # the server is `tour_server`, on free ports
            if kind == "websocket":
                tour.start_ws(block)
            else:
                tour.run_shell(block)
    finally:
        tour.close()
    assert tour.token is not None and tour_server.register("AA:BB:CC:DD:EE:FF") == tour.token
