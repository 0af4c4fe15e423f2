"""Python agents for an ``ipc-hub`` multi-agent runtime.

An agent joins the hub whose address it is given (or reads from the
``IPC_ADDRESS`` environment variable, as a Rust agent does), answers its
calls, sends it messages and logs, and calls it::

    import ipc_agent

    def answer(request):
        return {"output": request["query"].upper()}

    with ipc_agent.Agent.join("tools") as agent:
        agent.serve(answer)

The transport is the Rust one the address names (``pipe:stdio``,
``uds:PATH``, ``shm:NAME``; ``zenoh:...`` where the build includes it), so
a Python agent is as fast on the wire as a Rust one. Values travel in the
codec the agent names when it joins (MessagePack by default, or JSON):
``None``, ``bool``, ``int`` (64-bit), ``float``, ``str``, ``bytes``,
lists, tuples, dicts, sets and dataclasses. Raw bytes go as they are with
the ``*_bytes`` methods; a large body received over shared memory is a
read-only ``memoryview`` over the mapping the sender wrote (no copy), and
a large body sent is written once into memory the hub reads in place.

Every wait releases the GIL and can be interrupted with Ctrl-C. Errors:
``TimeoutError`` (a deadline passed), ``ConnectionError`` (the hub is gone
or unreachable; ``ConnectionRefusedError`` when it refused the
handshake), ``ValueError`` for bad arguments (``EncodeError`` and
``DecodeError`` for values), ``CallFailed`` when the other side answered a
call with a failure, ``IpcError`` the base of this package's own.
"""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import logging
import threading
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterator, Optional, Union

from . import _native
from ._native import (
    ADDRESS_ENV,
    CallFailed,
    DecodeError,
    EncodeError,
    IpcError,
    TooLarge,
)

__all__ = [
    "ADDRESS_ENV",
    "Agent",
    "CallFailed",
    "DEFAULT_TIMEOUT",
    "DecodeError",
    "EncodeError",
    "Event",
    "IpcError",
    "LogHandler",
    "Message",
    "Request",
    "Served",
    "Shutdown",
    "TooLarge",
]

#: Seconds a call waits for its answer unless told otherwise.
DEFAULT_TIMEOUT = 5.0

Buffer = Union[bytes, bytearray, memoryview]


def _view(body: "_native.Body") -> memoryview:
    """A read-only memoryview of received bytes where they lie, without a
    copy; it keeps them (and a shared mapping) alive while it, or any
    slice or array made from it, is alive."""
    n = len(body)
    if n == 0:
        return memoryview(b"")
    array = (ctypes.c_char * n).from_address(body.address)
    # The array owns nothing: it holds the Body, which holds the bytes.
    array._ipc_body = body  # type: ignore[attr-defined]
    return memoryview(array).cast("B").toreadonly()


def _raw(data: Any) -> Union[bytes, bytearray]:
    if isinstance(data, (bytes, bytearray)):
        return data
    # Any other buffer (memoryview, numpy array, array.array): one copy.
    return bytes(memoryview(data))


class Request:
    """A call from the hub. Answer it once: :meth:`reply` with a value,
    :meth:`reply_bytes` with raw bytes, or :meth:`fail` with a reason. A
    request dropped unanswered is failed for the caller ("dropped without
    an answer"), so the hub never waits out its deadline for nothing."""

    __slots__ = ("_native", "_codec")

    def __init__(self, native: "_native.NativeRequest", codec: str) -> None:
        self._native = native
        self._codec = codec

    @property
    def value(self) -> Any:
        """The request decoded with the agent's codec (``DecodeError`` if it
        is not a value in it)."""
        return self._native.value()

    @property
    def body(self) -> memoryview:
        """The request's bytes as they came, without a copy."""
        return _view(self._native.body())

    @property
    def peer(self) -> int:
        """Who called: the hub itself, or the agent it relays for."""
        return self._native.peer

    @property
    def answered(self) -> bool:
        return self._native.answered

    def reply(self, value: Any) -> None:
        """Answers with ``value``. ``EncodeError`` if the codec cannot encode
        it (the request stays unanswered: :meth:`fail` it)."""
        self._native.reply(value)

    def reply_bytes(self, data: Buffer) -> None:
        """Answers with raw bytes. A large answer (``LEND_FROM`` bytes or
        more) over shared memory is written once, into memory the hub then
        reads in place."""
        self._native.reply_bytes(_raw(data))

    def fail(self, reason: str) -> None:
        """Answers that the call failed; the caller sees ``reason``."""
        self._native.fail(str(reason))

    def __repr__(self) -> str:
        return f"Request(peer={self.peer}, answered={self.answered})"


@dataclass(frozen=True)
class Message:
    """A one-way message from the hub."""

    _body: "_native.Body"
    _codec: str

    @property
    def value(self) -> Any:
        """The message decoded with the agent's codec."""
        return self._body.decode(self._codec)

    @property
    def body(self) -> memoryview:
        """Its bytes as they came, without a copy."""
        return _view(self._body)


@dataclass(frozen=True)
class Shutdown:
    """The hub is shutting down: finish what is under way and close."""

    reason: str


Event = Union[Request, Message, Shutdown]


@dataclass
class Served:
    """What :meth:`Agent.serve` did."""

    answered: int = 0
    failed: int = 0
    messages_ignored: int = 0
    #: Why the connection ended, if it ended without the hub's goodbye.
    left: Optional[str] = None


class Agent:
    """An agent's membership of a hub. Use :meth:`join` to make one; close
    it with :meth:`close` or a ``with`` block. Safe to share between
    threads: one thread takes events while others call and send."""

    def __init__(self, native: "_native.NativeAgent") -> None:
        self._native = native
        self._left: Optional[str] = None
        self._closed = False

    @classmethod
    def join(
        cls,
        name: str,
        address: Optional[str] = None,
        *,
        codec: str = "msgpack",
        timeout: float = DEFAULT_TIMEOUT,
        max_message_size: Optional[int] = None,
    ) -> "Agent":
        """Connects to the hub at ``address`` (default: the ``IPC_ADDRESS``
        environment variable) and joins as ``name``, speaking ``codec``
        (``"msgpack"`` or ``"json"``), waiting up to ``timeout`` seconds
        for the welcome. ``max_message_size`` (default 16 MiB) bounds a
        message either way; the hub's connection must allow as much."""
        native = _native.NativeAgent.join(name, address, codec, float(timeout), max_message_size)
        return cls(native)

    @property
    def id(self) -> int:
        """The number the hub gave this agent."""
        return self._native.id

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def codec(self) -> str:
        return self._native.codec

    @property
    def left(self) -> Optional[str]:
        """Why the connection ended, once it has."""
        return self._left

    def call(self, request: Any, timeout: float = DEFAULT_TIMEOUT, *, raw_reply: bool = False) -> Any:
        """Calls the hub and returns its answer (with ``raw_reply``, its
        bytes as a memoryview, without a copy). ``TimeoutError`` after
        ``timeout`` seconds, ``CallFailed`` if it answered with a failure,
        ``ConnectionError`` if it is gone."""
        answer = self._native.call(request, float(timeout), raw_reply)
        return _view(answer) if raw_reply else answer

    def call_bytes(self, data: Buffer, timeout: float = DEFAULT_TIMEOUT) -> memoryview:
        """Calls the hub with raw bytes; returns its reply's bytes without a
        copy (over shared memory, a large reply is the mapping the hub
        wrote)."""
        return _view(self._native.call_bytes(_raw(data), float(timeout)))

    def send(self, message: Any) -> None:
        """Sends the hub a one-way message."""
        self._native.send(message)

    def send_bytes(self, data: Buffer) -> None:
        """Sends the hub raw bytes (a large body over shared memory is
        written once, where the hub reads it)."""
        self._native.send_bytes(_raw(data))

    def next_event(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event, or ``None`` when ``timeout`` seconds pass first or
        the connection has ended (then :attr:`left` says why)."""
        while True:
            got = self._native.next_event(None if timeout is None else float(timeout))
            if got is None:
                return None
            kind, payload = got
            if kind == "call":
                return Request(payload, self.codec)
            if kind == "message":
                return Message(payload, self.codec)
            if kind == "shutdown":
                return Shutdown(payload)
            if kind == "left":
                self._left = payload
            return None

    def __iter__(self) -> Iterator[Event]:
        """Events until the connection ends."""
        while True:
            event = self.next_event()
            if event is None:
                return
            yield event

    def serve(
        self,
        handler: Callable[[Any], Any],
        *,
        raw: bool = False,
        concurrency: int = 1,
    ) -> Served:
        """Answers the hub's calls with ``handler`` until the hub shuts down
        or the connection ends, then closes the agent.

        ``handler`` gets the request's value (or, with ``raw=True``, its
        bytes as a memoryview) and returns the answer (bytes-like with
        ``raw=True``); an exception fails the call with its text. An
        ``async def`` handler is run on a new asyncio loop (see
        :meth:`serve_async` to use a running one). With ``concurrency`` > 1,
        that many calls run at once on threads.
        """
        if inspect.iscoroutinefunction(handler):
            return asyncio.run(self.serve_async(handler, raw=raw))
        served = Served()
        lock = threading.Lock()

        def answer(request: Request) -> None:
            ok = _answer(request, handler, raw)
            with lock:
                if ok:
                    served.answered += 1
                else:
                    served.failed += 1

        pool = None
        if concurrency > 1:
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ipc-agent")
        try:
            for event in self:
                if isinstance(event, Request):
                    if pool is None:
                        answer(event)
                    else:
                        pool.submit(answer, event)
                elif isinstance(event, Message):
                    served.messages_ignored += 1
                elif isinstance(event, Shutdown):
                    break
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
            served.left = self._left
            self.close()
        return served

    async def serve_async(
        self,
        handler: Callable[[Any], Union[Any, Awaitable[Any]]],
        *,
        raw: bool = False,
        concurrency: int = 64,
    ) -> Served:
        """:meth:`serve` on the running asyncio loop: ``handler`` may be
        ``async def`` (each call runs as its own task, up to
        ``concurrency`` at once) or plain. Waiting for the hub happens on a
        worker thread, so the loop stays free."""
        loop = asyncio.get_running_loop()
        served = Served()
        slots = asyncio.Semaphore(max(1, concurrency))
        running: set = set()

        async def answer(request: Request) -> None:
            try:
                try:
                    value = handler(request.body if raw else request.value)
                    if inspect.isawaitable(value):
                        value = await value
                except Exception as e:  # noqa: BLE001 - the caller sees it
                    request.fail(f"{type(e).__name__}: {e}")
                    served.failed += 1
                    return
                if _send_answer(request, value, raw):
                    served.answered += 1
                else:
                    served.failed += 1
            finally:
                slots.release()

        try:
            while True:
                event = await loop.run_in_executor(None, self.next_event)
                if isinstance(event, Request):
                    await slots.acquire()
                    task = loop.create_task(answer(event))
                    running.add(task)
                    task.add_done_callback(running.discard)
                elif isinstance(event, Message):
                    served.messages_ignored += 1
                else:  # Shutdown, or the connection ended
                    break
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        finally:
            served.left = self._left
            await loop.run_in_executor(None, self.close)
        return served

    def log_handler(self, level: int = logging.NOTSET) -> "LogHandler":
        """A ``logging.Handler`` shipping records to the hub over this
        agent's connection."""
        return LogHandler(self, level)

    @property
    def logs_dropped(self) -> int:
        """Log records not shipped because the queue to the hub was full."""
        return self._native.logs_dropped

    def close(self, reason: str = "done", grace: float = 1.0) -> None:
        """Says goodbye and closes, waiting up to ``grace`` seconds for what
        is queued (answers, messages, logs) to go out. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._native.close(reason, float(grace))

    def __enter__(self) -> "Agent":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Agent(id={self.id}, name={self.name!r}, codec={self.codec!r})"


def _send_answer(request: Request, value: Any, raw: bool) -> bool:
    """Sends a handler's answer; a value that cannot be encoded fails the
    call with the reason instead."""
    try:
        if raw:
            request.reply_bytes(value)
        else:
            request.reply(value)
        return True
    except (EncodeError, TypeError) as e:
        request.fail(f"the answer could not be encoded: {e}")
        return False


def _answer(request: Request, handler: Callable[[Any], Any], raw: bool) -> bool:
    try:
        value = handler(request.body if raw else request.value)
    except Exception as e:  # noqa: BLE001 - the caller sees it
        request.fail(f"{type(e).__name__}: {e}")
        return False
    return _send_answer(request, value, raw)


# What every LogRecord carries; the rest of its attributes came in `extra`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_LEVELS = ((logging.ERROR, "ERROR"), (logging.WARNING, "WARN"), (logging.INFO, "INFO"), (logging.DEBUG, "DEBUG"))


def _level(levelno: int) -> str:
    for floor, name in _LEVELS:
        if levelno >= floor:
            return name
    return "TRACE"


class LogHandler(logging.Handler):
    """Ships log records to the hub as log events (the hub sees
    ``HubEvent::Log``), with the record's ``extra`` fields, the logger's
    name as the target, and ``file``/``line``. Never blocks: a record that
    finds the queue to the hub full is dropped and counted (the hub sees
    the count in the next record)."""

    def __init__(self, agent: Agent, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._agent = agent

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = [(k, v) for k, v in vars(record).items() if k not in _STANDARD]
            fields.append(("file", record.pathname))
            fields.append(("line", record.lineno))
            if record.exc_info:
                fields.append(("exception", logging.Formatter().formatException(record.exc_info)))
            self._agent._native.try_log(_level(record.levelno), record.name, record.getMessage(), fields)
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)
