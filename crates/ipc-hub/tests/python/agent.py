"""An ipc-hub agent written from docs/PROTOCOL.md, standard library only.

Joins the hub at IPC_ADDRESS (uds:PATH) as "py-agent", sends one log
record, answers calls whose body is a String with the string in upper
case (a call of "fail" gets a Fail), echoes one-way messages back, and
leaves when the hub says goodbye.

Bodies are postcard (the hub's own codec: the hello names none), or
JSON when PY_AGENT_CODEC=json (named in the hello, section 5). In JSON a
call may also be an object {"text": ..., ...}: it is answered with
{"upper": ..., "codec": "json"}, fields it does not know ignored.
"""

import json
import os
import socket
import struct
import time

MAGIC = int.from_bytes(b"IPC1", "little")
HELLO, WELCOME, MESSAGE, CALL, REPLY, FAIL, LOG, BYE = range(1, 9)


def send_frame(sock, payload):
    n = len(payload)
    sock.sendall(struct.pack("<II", n, (~n & 0xFFFFFFFF) ^ MAGIC) + payload)


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None if not data else data  # cut short: caller checks
        data += chunk
    return data


def recv_frame(sock):
    """The next frame's payload, or None at a clean end of stream."""
    header = recv_exact(sock, 8)
    if header is None:
        return None
    if len(header) < 8:
        raise ValueError("the stream ended inside a frame header")
    n, check = struct.unpack("<II", header)
    if check != (~n & 0xFFFFFFFF) ^ MAGIC:
        raise ValueError("bad frame header")
    payload = recv_exact(sock, n) if n else b""
    if payload is None or len(payload) < n:
        raise ValueError("the stream ended inside a frame")
    return payload


def envelope(kind, ident, body=b""):
    return struct.pack("<BQ", kind, ident) + body


def open_envelope(payload):
    kind, ident = struct.unpack("<BQ", payload[:9])
    return kind, ident, payload[9:]


# -- postcard, the parts this agent needs --

def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data, at):
    n, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return n, at


def string(s):
    raw = s.encode("utf-8")
    return varint(len(raw)) + raw


def read_string(data, at=0):
    n, at = read_varint(data, at)
    return data[at:at + n].decode("utf-8"), at + n


def field_u64(name, value):
    return string(name) + varint(2) + varint(value)  # FieldValue::U64


def log_record(message, agent, step):
    return (
        varint(time.monotonic_ns())
        + string("INFO")
        + string("agent.py")
        + string(message)
        + varint(1) + field_u64("step", step)  # fields
        + varint(0)  # spans
        + string(agent)
        + varint(os.getpid())
        + varint(0)  # dropped
    )


def main():
    name = "py-agent"
    address = os.environ["IPC_ADDRESS"]
    if not address.startswith("uds:"):
        raise SystemExit(f"this agent speaks uds only, not {address}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(address[len("uds:"):])
    codec = os.environ.get("PY_AGENT_CODEC", "postcard")
    hello = struct.pack("<H", 1) + name.encode()
    if codec == "json":
        hello += b"\x00json"
    send_frame(sock, envelope(HELLO, 0, hello))
    kind, _peer_id, _ = open_envelope(recv_frame(sock))
    if kind != WELCOME:
        raise SystemExit(f"expected a welcome, got kind {kind}")
    send_frame(sock, envelope(LOG, 0, log_record("hello from python", name, 1)))
    while True:
        payload = recv_frame(sock)
        if payload is None:
            break
        kind, ident, body = open_envelope(payload)
        if kind == CALL and codec == "json":
            asked = json.loads(body)
            if asked == "fail":
                send_frame(sock, envelope(FAIL, ident, b"asked to fail"))
            elif isinstance(asked, dict):
                answer = {"upper": asked["text"].upper(), "codec": "json"}
                send_frame(sock, envelope(REPLY, ident, json.dumps(answer).encode()))
            else:
                send_frame(sock, envelope(REPLY, ident, json.dumps(asked.upper()).encode()))
        elif kind == CALL:
            text, _ = read_string(body)
            if text == "fail":
                send_frame(sock, envelope(FAIL, ident, b"asked to fail"))
            else:
                send_frame(sock, envelope(REPLY, ident, string(text.upper())))
        elif kind == MESSAGE:
            send_frame(sock, envelope(MESSAGE, 0, body))
        elif kind == BYE:
            send_frame(sock, envelope(LOG, 0, log_record("last words", name, 2)))
            send_frame(sock, envelope(BYE, 0, b"done"))
            sock.shutdown(socket.SHUT_WR)
            while recv_frame(sock) is not None:
                pass
            break
    sock.close()


if __name__ == "__main__":
    main()
