"""Agent processes the tests start: `python agents.py ROLE [ARGS]`, joined
to the hub in IPC_ADDRESS (the driver starts them, over pipe, uds or shm).
They tell the test what they saw by sending the hub a message
`{"report": ...}`."""

import asyncio
import logging
import os
import signal
import sys
import time

import ipc_agent

BIG = 128 << 20


def mapping_of(address: int) -> str:
    """The /proc/self/maps line of the mapping that holds `address`."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            span = line.split()[0]
            lo, hi = (int(x, 16) for x in span.split("-"))
            if lo <= address < hi:
                return line.strip()
    return ""


def main() -> int:
    role = sys.argv[1]
    codec = os.environ.get("PY_AGENT_CODEC", "msgpack")
    # Room for the 64 MiB results (the hub allows as much).
    agent = ipc_agent.Agent.join(f"py-{role}", codec=codec, max_message_size=BIG)

    if role == "echo":
        served = agent.serve(lambda value: {"got": value, "codec": agent.codec})
        return 0 if served.left is None else 1

    if role == "caller":
        values = [None, True, -7, 2**63 - 1, 2.5, "héllo", b"\x00\xff", [1, [2, [3]]], {"k": {"n": 1}}]
        if codec == "json":
            values.remove(b"\x00\xff")
        got = [agent.call({"echo": v}) for v in values]
        failed = None
        try:
            agent.call({"fail": "no such tool"})
        except ipc_agent.CallFailed as e:
            failed = str(e)
        agent.send({"report": {"sent": values, "got": got, "failed": failed}})
        agent.serve(lambda value: value)
        return 0

    if role == "crash":
        agent.serve(lambda value: os._exit(3))
        return 0

    if role == "hang":
        agent.serve(lambda value: time.sleep(3600))
        return 0

    if role == "killed":
        def die(value):
            os.kill(os.getpid(), signal.SIGKILL)

        agent.serve(die)
        return 0

    if role == "logger":
        log = logging.getLogger("tools.search")
        log.setLevel(logging.DEBUG)
        log.addHandler(agent.log_handler())
        log.info("searching %s", "docs", extra={"tool": "search", "hits": 3, "score": 0.5, "cached": False})
        try:
            raise KeyError("missing")
        except KeyError:
            log.exception("lookup failed")
        agent.serve(lambda value: value)
        return 0

    if role == "big_receive":
        n = int(sys.argv[2])
        started = time.perf_counter()
        view = agent.call({"big": n}, timeout=30, raw_reply=True)
        elapsed = time.perf_counter() - started
        address = _buffer_address(view)
        ok = len(view) == n and all(view[i] == i % 251 for i in range(0, n, 4093))
        agent.send({"report": {
            "len": len(view), "pattern": ok, "readonly": view.readonly,
            "mapping": mapping_of(address), "ms": elapsed * 1e3,
            "as_bytes": bytes(view[:5]) == bytes(range(5)),
        }})
        agent.serve(lambda value: value)
        return 0

    if role == "big_reply":
        def reply(body):
            n = int(bytes(body))
            return bytes(i % 251 for i in range(251)) * (n // 251) + bytes(range(n % 251))

        agent.serve(reply, raw=True)
        return 0

    if role == "bad_values":
        seen = {}
        for label, value in [("object", object()), ("huge_int", 2**70), ("function", print)]:
            try:
                agent.send(value)
                seen[label] = "sent"
            except ipc_agent.EncodeError as e:
                seen[label] = f"EncodeError: {e}"
        try:
            agent.call({"echo": object()})
        except ValueError as e:
            seen["call"] = type(e).__name__
        agent.send({"report": seen})
        agent.serve(lambda value: object())  # an answer that cannot be encoded
        return 0

    if role == "async":
        async def handler(value):
            await asyncio.sleep(0.01)
            return {"async": value}

        served = agent.serve(handler)
        return 0 if served.answered >= 1 else 1

    print(f"unknown role {role}", file=sys.stderr)
    return 2


def _buffer_address(view: memoryview) -> int:
    """The address of a read-only buffer's first byte (ctypes cannot take
    one from a read-only buffer directly: go through the object it views)."""
    base = view.obj
    import ctypes

    if isinstance(base, ctypes.Array):
        return ctypes.addressof(base)
    raise TypeError(f"not a view over memory: {type(base)}")


if __name__ == "__main__":
    sys.exit(main())
