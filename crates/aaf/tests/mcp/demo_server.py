"""An MCP server over stdio for AAF's gateway tests, written with the official Python SDK
(`mcp` on PyPI): `echo(text)` returns the text, `add(a, b)` the sum, `env()` the names of
the environment variables it was started with (to show that AAF scrubs them).

Python `mcp` 2.x names the server class MCPServer (mcp.server.mcpserver); 1.x FastMCP.
"""
import os

try:  # mcp >= 2
    from mcp.server.mcpserver import MCPServer as FastMCP
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP

server = FastMCP("demo")


@server.tool()
def echo(text: str) -> str:
    """Echo the given text back."""
    return text


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def env() -> str:
    """The names of the environment variables this server sees, sorted, comma-separated."""
    return ",".join(sorted(os.environ))


if __name__ == "__main__":
    server.run()  # stdio
