// An MCP client written with the official TypeScript SDK, for AAF's tests
// (crates/aaf/tests/integration/mcp_node.rs): connects to `<url>` over streamable HTTP with
// the agent key of AAF_AGENT_KEY as the Bearer token, lists the tools, then makes the calls
// of `<calls>` (a JSON array of {"name", "arguments"}) one after the other, and prints one
// JSON object on standard output:
//
//   {"server": {...}, "tools": [names],
//    "results": [{"name", "isError", "text", "content", "structuredContent", "progress"}]}
//
// `text` is the result's text content joined by newlines, `content` and `structuredContent`
// are the result's own (the SDK checks `structuredContent` against the tool's
// `outputSchema` of the listing); `progress` holds the messages of
// the `notifications/progress` the call was sent (each call asks for them). A JSON-RPC error
// of a call is a result {"name", "error"}.
//
// Usage: AAF_AGENT_KEY=aaf_ak_... node client.mjs <url> '<calls>'

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, callsJson = "[]"] = process.argv.slice(2);
const key = process.env.AAF_AGENT_KEY;
if (!url || !key) {
  console.error("usage: AAF_AGENT_KEY=... node client.mjs <url> '<calls>'");
  process.exit(2);
}
const calls = JSON.parse(callsJson);

const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${key}` } },
});
const client = new Client({ name: "aaf-node-test-client", version: "1.0.0" });
await client.connect(transport);

const tools = [];
let cursor;
do {
  const page = await client.listTools(cursor ? { cursor } : undefined);
  tools.push(...page.tools.map((t) => t.name));
  cursor = page.nextCursor;
} while (cursor);

const results = [];
for (const { name, arguments: args } of calls) {
  const progress = [];
  try {
    const result = await client.callTool({ name, arguments: args }, undefined, {
      onprogress: (p) => progress.push(p.message ?? ""),
      timeout: 30_000,
    });
    const text = (result.content ?? [])
      .filter((c) => c.type === "text")
      .map((c) => c.text)
      .join("\n");
    results.push({
      name,
      isError: result.isError === true,
      text,
      content: result.content ?? [],
      structuredContent: result.structuredContent ?? null,
      progress,
    });
  } catch (e) {
    results.push({ name, error: String(e?.message ?? e), progress });
  }
}

console.log(JSON.stringify({ server: client.getServerVersion(), tools, results }));
await client.close();
