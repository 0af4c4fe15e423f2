"""A tool agent in Python, for the Rust hub example:

    cargo xtask test --python-only          # once: builds and installs ipc_agent
    cargo run -p ipc-hub --example hub -- uds:/tmp/hub.sock \
        "target/python-venv/bin/python examples/python/tool_agent.py"

The hub starts it with IPC_ADDRESS set; it answers the hub's ToolCall
(a dict in MessagePack: {"tool": ..., "query": ...}) with a ToolResult
({"output": ...}), logs each call with its fields, and leaves when the hub
shuts down.
"""

import logging

import ipc_agent

log = logging.getLogger("tool_agent")


def run_tool(call: dict) -> dict:
    log.info("running %s", call["tool"], extra={"tool": call["tool"], "query_len": len(call["query"])})
    return {"output": f"python ran {call['tool']} on {call['query']!r}"}


def main() -> None:
    with ipc_agent.Agent.join("python-agent") as agent:
        log.addHandler(agent.log_handler())
        log.setLevel(logging.INFO)
        agent.serve(run_tool)


if __name__ == "__main__":
    main()
