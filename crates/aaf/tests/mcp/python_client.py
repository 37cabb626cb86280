"""An MCP client for AAF's gateway tests, written with the official Python SDK (`mcp` on
PyPI): it connects to AAF's `/mcp` over streamable HTTP with the agent's key as the Bearer
token, lists the tools, makes the calls it is given, one after the other, and prints one
JSON object on standard output.

    AAF_AGENT_KEY=aaf_ak_... python3 python_client.py [--mode MODE] http://127.0.0.1:8700/mcp CALLS

CALLS is a JSON list of `{"name": "<server>__<tool>", "arguments": {...}}` (`-` or absent:
read from standard input). MODE is how the SDK (2.x) negotiates the protocol revision:
`auto` (its default: `server/discover`, then the newest revision both speak, falling back to
the initialize handshake), `legacy` (the initialize handshake) or a revision such as
`2026-07-28`; 1.x always uses the initialize handshake. The output:

    {"sdk": "2.3.0", "protocol_version": "...", "server": "aaf",
     "tools": ["demo__add", ...],
     "results": [{"is_error": false, "text": "...", "progress": [...]}
                 | {"error": {"code": -32602, "message": "..."}}, ...]}

`text` joins the text blocks of the result; `progress` holds the messages of the
`notifications/progress` the call was sent; `error` is a JSON-RPC error (the SDK raised).

Python `mcp` 2.x has `mcp.Client` (which negotiates the protocol revision itself) over
`streamable_http_client` with an `httpx2` client; 1.x has `ClientSession` over
`streamable_http_client` with an `httpx` client (1.2x) or `streamablehttp_client(url,
headers=...)` (earlier). Both are supported (checked with 2.3.0 and 1.30.0).
"""
import json
import os
import sys
from importlib.metadata import version

import anyio


def result_entry(result, progress):
    dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    texts = [c["text"] for c in dumped.get("content", []) if c.get("type") == "text"]
    return {
        "is_error": bool(dumped.get("isError", False)),
        "text": "\n".join(texts),
        "progress": progress,
    }


def error_entry(e):
    error = getattr(e, "error", None)
    if error is not None and hasattr(error, "code"):
        return {"error": {"code": error.code, "message": error.message}}
    return {"error": {"code": None, "message": f"{type(e).__name__}: {e}"}}


async def run_calls(list_tools, call_tool, calls):
    listed = await list_tools()
    tools = sorted(t.name for t in listed.tools)
    results = []
    for c in calls:
        heard = []

        async def on_progress(progress, total, message, heard=heard):
            heard.append(message or "")

        try:
            result = await call_tool(c["name"], c.get("arguments") or {}, on_progress)
        except Exception as e:  # a JSON-RPC error: recorded, the next call still runs
            results.append(error_entry(e))
            continue
        results.append(result_entry(result, heard))
    return tools, results


async def main_v2(url, headers, calls, mode):
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    timeout = httpx2.Timeout(30, read=300)
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:

            async def call_tool(name, arguments, on_progress):
                return await client.call_tool(name, arguments, progress_callback=on_progress)

            tools, results = await run_calls(client.list_tools, call_tool, calls)
            info = client.server_info
            return {
                "protocol_version": client.protocol_version,
                "server": info.name if info is not None else None,
                "tools": tools,
                "results": results,
            }


async def main_v1(url, headers, calls, _mode):
    from contextlib import AsyncExitStack

    from mcp import ClientSession

    async with AsyncExitStack() as stack:
        try:  # 1.2x: an httpx client of one's own
            import httpx
            from mcp.client.streamable_http import streamable_http_client

            http = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30, read=300))
            await stack.enter_async_context(http)
            transport = streamable_http_client(url, http_client=http)
        except ImportError:  # earlier 1.x
            from mcp.client.streamable_http import streamablehttp_client

            transport = streamablehttp_client(url, headers=headers)
        streams = await stack.enter_async_context(transport)
        async with ClientSession(streams[0], streams[1]) as session:
            init = await session.initialize()

            async def call_tool(name, arguments, on_progress):
                return await session.call_tool(name, arguments, progress_callback=on_progress)

            tools, results = await run_calls(session.list_tools, call_tool, calls)
            return {
                "protocol_version": init.protocolVersion,
                "server": init.serverInfo.name,
                "tools": tools,
                "results": results,
            }


def main():
    args = sys.argv[1:]
    mode = "auto"
    if args[:1] == ["--mode"] and len(args) > 1:
        mode, args = args[1], args[2:]
    if not args:
        sys.exit("usage: python_client.py [--mode MODE] URL [CALLS_JSON | -]   (key in AAF_AGENT_KEY)")
    url = args[0]
    raw = args[1] if len(args) > 1 and args[1] != "-" else sys.stdin.read()
    calls = json.loads(raw) if raw.strip() else []
    headers = {"Authorization": f"Bearer {os.environ['AAF_AGENT_KEY']}"}
    sdk = version("mcp")
    run = main_v2 if int(sdk.split(".")[0]) >= 2 else main_v1
    out = anyio.run(run, url, headers, calls, mode)
    out["sdk"] = sdk
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
