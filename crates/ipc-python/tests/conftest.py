"""A Rust hub (the `ipc-hub-driver` binary) for each test, over pipe, uds
or shm, and the check that nothing is left in /dev/shm or the socket
directory afterwards."""

import itertools
import json
import os
import select
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
AGENTS = HERE / "agents.py"
_count = itertools.count()


def driver_path() -> str:
    path = os.environ.get("IPC_HUB_DRIVER")
    if path:
        return path
    root = HERE.parents[2]
    for profile in ("release", "debug"):
        candidate = root / "target" / profile / "ipc-hub-driver"
        if candidate.exists():
            return str(candidate)
    pytest.exit("no ipc-hub-driver: run `cargo xtask test` (or set IPC_HUB_DRIVER)", 2)


class Hub:
    """The driver process: one JSON command a line in, one answer out."""

    def __init__(self, transport: str, workdir: Path) -> None:
        n = next(_count)
        self.address = {
            "pipe": "pipe:stdio",
            "uds": f"uds:{workdir}/hub.sock",
            "shm": f"shm:ipc-pytest-{os.getpid()}-{n}",
        }[transport]
        self.transport = transport
        self.proc = subprocess.Popen(
            [driver_path(), self.address],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        # Its first answer means it listens: an agent may join from now.
        self.cmd("events")

    def cmd(self, op: str, **args) -> dict:
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        # The command's own deadline, and a margin for a loaded machine.
        limit = float(args.get("timeout", 0)) + 60
        ready, _, _ = select.select([self.proc.stdout], [], [], limit)
        assert ready, f"the hub did not answer {op} within {limit} s"
        line = self.proc.stdout.readline()
        assert line, f"the hub exited (status {self.proc.poll()}) during {op}"
        return json.loads(line)

    def spawn(self, role: str, *args: str, name: str = None, env: dict = None) -> None:
        env = {"PY_AGENT_CODEC": "msgpack", **(env or {})}
        answer = self.cmd(
            "spawn",
            name=name or f"py-{role}",
            argv=[sys.executable, str(AGENTS), role, *args],
            env=env,
        )
        assert answer == {"ok": True}, answer

    def agents(self, count: int, timeout: float = 20.0) -> list:
        answer = self.cmd("wait", count=count, timeout=timeout)
        assert "error" not in answer, answer
        return answer["peers"][-count:]

    def events(self, settle: float = 0.0) -> list:
        return self.cmd("events", settle=settle)["events"]

    def report(self, timeout: float = 30.0) -> dict:
        """The next `{"report": ...}` an agent sent."""
        waited = 0.0
        while waited < timeout:
            for event in self.events(settle=0.1):
                message = event.get("message")
                if message and isinstance(message.get("value"), dict) and "report" in message["value"]:
                    return message["value"]["report"]
            waited += 0.1
        raise AssertionError("no report from the agent")

    def shutdown(self) -> dict:
        if self.proc.poll() is not None:
            return {}
        try:
            return self.cmd("shutdown", grace=2.0)
        finally:
            self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def leftovers(workdir: Path) -> set:
    found = {f"/dev/shm/{n}" for n in os.listdir("/dev/shm") if n.startswith("ipc-")}
    found |= {str(p) for p in workdir.iterdir()}
    return found


def _hub_over(transport: str):
    """A hub over `transport` for one test; afterwards, nothing of it may
    be left in /dev/shm or its socket directory."""
    with tempfile.TemporaryDirectory(prefix="ipc-pytest-") as tmp:
        workdir = Path(tmp)
        before = leftovers(workdir)
        hub = Hub(transport, workdir)
        try:
            yield hub
            hub.shutdown()
        finally:
            hub.kill()
        left = leftovers(workdir) - before
        assert not left, f"left behind: {sorted(left)}"


@pytest.fixture(params=["pipe", "uds", "shm"])
def hub(request):
    yield from _hub_over(request.param)


@pytest.fixture(params=["uds", "shm"])
def listening_hub(request):
    """A hub this test process can join itself."""
    yield from _hub_over(request.param)
