"""Python agents against a Rust hub, over pipe, uds and shared memory,
each agent its own process (and, for uds and shm, this test process
joining too)."""

import logging
import os
import signal
import subprocess
import sys
import time

import pytest

import ipc_agent
from conftest import AGENTS

MIB = 1 << 20


def test_typed_calls_both_ways(hub):
    hub.spawn("echo")
    hub.spawn("caller")
    echo, caller = sorted(hub.agents(2), key=lambda p: p["name"] != "py-echo")
    assert echo["codec"] == "msgpack"
    value = {"tool": "search", "args": [1, -2, 3.5, None, True], "text": "ünïcode"}
    answer = hub.cmd("call", peer=echo["id"], value=value, timeout=10)
    assert answer["ok"] == {"got": value, "codec": "msgpack"}, answer

    report = hub.report()
    # Bytes come back as bytes on the Python side (JSON shows them as a list).
    assert report["got"] == report["sent"], report
    assert report["failed"] == "no such tool"


def test_json_agent_speaks_json(hub):
    hub.spawn("echo", env={"PY_AGENT_CODEC": "json"})
    (peer,) = hub.agents(1)
    assert peer["codec"] == "json"
    answer = hub.cmd("call", peer=peer["id"], value={"q": [1, "x"]}, timeout=10)
    assert answer["ok"] == {"got": {"q": [1, "x"]}, "codec": "json"}


def test_answered_crashed_and_hung_are_told_apart(hub):
    for role in ("echo", "crash", "hang"):
        hub.spawn(role)
    peers = {p["name"]: p["id"] for p in hub.agents(3)}
    answered = hub.cmd("call", peer=peers["py-echo"], value=1, timeout=10)
    crashed = hub.cmd("call", peer=peers["py-crash"], value=1, timeout=10)
    hung = hub.cmd("call", peer=peers["py-hang"], value=1, timeout=1)
    assert answered["ok"]["got"] == 1
    assert crashed["error"] == "gone", crashed
    assert hung["error"] == "timeout", hung


def test_killed_mid_call_is_peer_gone(hub):
    hub.spawn("killed")
    (peer,) = hub.agents(1)
    started = time.monotonic()
    answer = hub.cmd("call", peer=peer["id"], value="work", timeout=20)
    assert answer["error"] == "gone", answer
    assert time.monotonic() - started < 10, "the death was seen only at the deadline"


def test_logs_arrive_with_their_fields(hub):
    hub.spawn("logger")
    (peer,) = hub.agents(1)
    logs = []
    for _ in range(100):
        logs += [e["log"] for e in hub.events(settle=0.05) if "log" in e]
        if len(logs) >= 2:
            break
    info, error = logs[:2]
    assert info["level"] == "INFO" and info["target"] == "tools.search"
    assert info["message"] == "searching docs"
    assert info["agent"] == "py-logger" and info["peer"] == peer["id"]
    fields = info["fields"]
    assert fields["tool"] == "search" and fields["hits"] == 3
    assert fields["score"] == 0.5 and fields["cached"] is False
    assert fields["file"].endswith("agents.py")
    assert error["level"] == "ERROR" and "KeyError: 'missing'" in error["fields"]["exception"]


def test_a_large_result_reaches_python_without_a_copy(hub):
    n = 64 * MIB
    hub.spawn("big_receive", str(n))
    hub.agents(1)
    report = hub.report(timeout=60)
    assert report["len"] == n and report["pattern"] and report["as_bytes"], report
    assert report["readonly"]
    if hub.transport == "shm":
        # The view is over the memory file the hub wrote, mapped here.
        assert "memfd:" in report["mapping"], report["mapping"]


def test_a_large_result_from_python_is_written_once(hub):
    hub.spawn("big_reply")
    (peer,) = hub.agents(1)
    n = 64 * MIB
    # The request is the size, as text: a raw call.
    answer = hub.cmd("call_bytes", peer=peer["id"], body=str(n), timeout=60)
    assert answer["len"] == n and answer["pattern"], answer
    # Over shared memory the hub reads the file the agent wrote.
    assert answer["shared"] == (hub.transport == "shm"), answer


def test_values_the_codec_cannot_encode_are_clear_errors(hub):
    hub.spawn("bad_values")
    (peer,) = hub.agents(1)
    report = hub.report()
    assert report["object"].startswith("EncodeError: cannot encode a value of type object")
    assert report["huge_int"].startswith("EncodeError")
    assert report["function"].startswith("EncodeError")
    assert report["call"] == "EncodeError"
    # The handler's answer cannot be encoded: the hub's call fails, saying so.
    answer = hub.cmd("call", peer=peer["id"], value=1, timeout=10)
    assert answer["error"] == "failed" and "could not be encoded" in answer["text"], answer


def test_an_async_handler(hub):
    hub.spawn("async")
    (peer,) = hub.agents(1)
    answer = hub.cmd("call", peer=peer["id"], value=[1, 2], timeout=10)
    assert answer["ok"] == {"async": [1, 2]}, answer


# ---- this process as the agent (uds and shm) ----


def test_in_process_agent(listening_hub):
    address = listening_hub.address
    with pytest.raises(ValueError, match="name"):
        ipc_agent.Agent.join("bad\nname", address)
    with ipc_agent.Agent.join("in-process", address) as agent:
        assert agent.codec == "msgpack" and agent.id >= 1
        assert agent.call({"echo": {"b": b"\x01\x02", "n": [1.5]}}) == {"b": b"\x01\x02", "n": [1.5]}
        with pytest.raises(ipc_agent.CallFailed, match="nope"):
            agent.call({"fail": "nope"})
        with pytest.raises(TimeoutError):
            agent.call({"sleep": 5}, timeout=0.2)
        view = agent.call({"big": 3 * MIB}, raw_reply=True)
        assert len(view) == 3 * MIB and view[251] == 0 and view[252] == 1
        if listening_hub.transport == "shm":
            assert "memfd:" in _mapping(view.obj)
        (peer,) = listening_hub.agents(1)
        listening_hub.cmd("send", peer=peer["id"], value={"hello": "python"})
        message = agent.next_event(timeout=5)
        assert isinstance(message, ipc_agent.Message) and message.value == {"hello": "python"}
        assert agent.next_event(timeout=0.05) is None  # nothing more: the timeout
    # Closed: its calls are a ConnectionError now.
    with pytest.raises(ConnectionError):
        agent.call(1)


def test_a_gone_hub_is_a_connection_error(listening_hub):
    agent = ipc_agent.Agent.join("left-behind", listening_hub.address)
    listening_hub.shutdown()
    event = agent.next_event(timeout=10)
    assert isinstance(event, ipc_agent.Shutdown)
    assert agent.next_event(timeout=10) is None and agent.left
    with pytest.raises(ConnectionError):
        agent.call(1, timeout=1)
    # Logging to a closed agent neither raises nor waits: each record is
    # refused at once and counted. (Before the close, records may still
    # be queued: the hub said goodbye, and an agent may send last words.)
    log = logging.getLogger("ipc-test-gone")
    log.addHandler(agent.log_handler())
    agent.close()
    before = agent.logs_dropped
    for n in range(100):
        log.warning("nobody hears %d", n)
    assert agent.logs_dropped - before == 100


def test_join_errors_are_python_exceptions(tmp_path, monkeypatch):
    monkeypatch.delenv("IPC_ADDRESS", raising=False)
    with pytest.raises(ValueError, match="IPC_ADDRESS"):
        ipc_agent.Agent.join("x")
    with pytest.raises(ValueError):
        ipc_agent.Agent.join("x", "nonsense")
    with pytest.raises(ValueError, match="codec"):
        ipc_agent.Agent.join("x", f"uds:{tmp_path}/none.sock", codec="postcard")
    with pytest.raises(ConnectionError):
        ipc_agent.Agent.join("x", f"uds:{tmp_path}/none.sock")


def test_ctrl_c_interrupts_a_waiting_call(listening_hub):
    # Python's own Ctrl-C handler, even where this test runs with SIGINT
    # ignored (a shell's background job is, and Python keeps that).
    code = (
        "import ipc_agent, signal, sys\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "agent = ipc_agent.Agent.join('patient')\n"
        "print('joined', flush=True)\n"
        "try:\n"
        "    agent.call({'sleep': 60}, timeout=120)\n"
        "except KeyboardInterrupt:\n"
        "    agent.close(); sys.exit(42)\n"
    )
    env = dict(os.environ, IPC_ADDRESS=listening_hub.address)
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "joined"
        time.sleep(0.3)
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=10) == 42
    finally:
        child.kill()
        child.wait()


def _mapping(obj) -> str:
    import ctypes

    address = ctypes.addressof(obj)
    with open("/proc/self/maps") as maps:
        for line in maps:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= address < hi:
                return line
    return ""
