"""A real MCP client for the end-to-end tests: the official Python SDK (PyPI `mcp`).

Reads a program from stdin (JSON):

    {"transport": "http", "url": "http://127.0.0.1:PORT/mcp", "token": "slw_..."}
    {"transport": "stdio", "command": "/path/slipway-agent", "args": ["mcp"], "env": {...}}

plus "steps": a list of {"op": "list_tools"} and {"op": "call", "tool": NAME, "args": {...}},
run in order in one session. Prints one JSON object: {"results": [...]}, a result per step
with how long it took ("ms"). A call the server answers with a JSON-RPC error gives
{"error": {"code", "message"}}; a tool result gives {"is_error", "structured", "text"}.
"""

import asyncio
import json
import sys
import time

import httpx2
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client


def transport(program):
    if program["transport"] == "http":
        headers = {}
        if program.get("token"):
            headers["Authorization"] = "Bearer " + program["token"]
        http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(120.0))
        return streamable_http_client(program["url"], http_client=http)
    return StdioServerParameters(
        command=program["command"], args=program.get("args", []), env=program.get("env")
    )


def tool_result(result):
    text = "".join(getattr(block, "text", "") for block in result.content)
    return {
        "is_error": bool(result.is_error),
        "structured": result.structured_content,
        "text": text,
    }


async def run(program):
    results = []
    async with Client(transport(program), read_timeout_seconds=120) as client:
        for step in program["steps"]:
            start = time.perf_counter()
            try:
                if step["op"] == "list_tools":
                    listed = await client.list_tools()
                    out = {
                        "tools": [
                            {
                                "name": t.name,
                                "description": t.description,
                                "annotations": t.annotations.model_dump(by_alias=True, exclude_none=True)
                                if t.annotations
                                else None,
                                "input_schema": t.input_schema,
                                "output_schema": t.output_schema,
                            }
                            for t in listed.tools
                        ]
                    }
                else:
                    out = tool_result(await client.call_tool(step["tool"], step.get("args", {})))
            except MCPError as e:
                out = {"error": {"code": e.error.code, "message": e.error.message}}
            out["ms"] = (time.perf_counter() - start) * 1000.0
            results.append(out)
    return {"results": results}


def main():
    program = json.load(sys.stdin)
    print(json.dumps(asyncio.run(run(program))))


if __name__ == "__main__":
    main()
