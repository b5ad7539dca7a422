"""End-to-end scenarios for ssh-session-mcp, driven by the official MCP Python SDK.

Run by ssh-session-mcp/tests/e2e.rs, one scenario per process:
    python e2e.py SCENARIO
with SSH_SESSION_E2E holding a JSON object describing the test kit's sshd and the binary.
Every check raises on failure with the offending result, so the Rust test shows it.
"""

import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request
from contextlib import asynccontextmanager

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

ENV = json.loads(os.environ["SSH_SESSION_E2E"])
TARGET = f"{ENV['user']}@{ENV['host']}:{ENV['port']}"
# A sleep length unique to this run, so pgrep/pkill find only our own background job.
SLEEP = f"{300 + os.getpid() % 1000}.{os.getpid()}"
TOOLS = [
    "ssh_connect", "ssh_exec", "ssh_read_output", "ssh_send_input", "ssh_interrupt", "ssh_cancel",
    "ssh_disconnect", "ssh_list_sessions", "ssh_list_hosts", "ssh_session_status", "ssh_history", "ssh_share",
    "ssh_read_file", "ssh_write_file", "ssh_list_dir", "ssh_upload", "ssh_download",
    "ssh_tunnel_open", "ssh_tunnel_list", "ssh_tunnel_close", "ssh_exec_many", "ssh_host_info",
]


def check(cond, what, detail=None):
    if not cond:
        raise AssertionError(f"{what}: {detail!r}")


def server_args(known_hosts=None, extra=()):
    return [
        "--no-agent",
        "--ssh-config", ENV["ssh_config"],
        "--known-hosts", known_hosts or ENV["known_hosts"],
        *extra,
    ]


class Client:
    def __init__(self, session):
        self.session = session

    async def call(self, tool, progress=None, **args):
        return await self.session.call_tool(tool, args, progress_callback=progress)

    async def ok(self, tool, **args):
        r = await self.call(tool, **args)
        check(not r.is_error, f"{tool} failed", r.content)
        check(isinstance(r.structured_content, dict), f"{tool} has no structured content", r)
        check(r.content and r.content[0].text, f"{tool} has no text copy", r)
        return r.structured_content

    async def err(self, tool, **args):
        r = await self.call(tool, **args)
        check(r.is_error, f"{tool} should fail", r.structured_content)
        return r.content[0].text

    async def connect(self, name, **extra):
        args = {"name": name, "host": TARGET, "identity_file": ENV["key"], **extra}
        return await self.ok("ssh_connect", **args)

    async def run(self, session, command, **extra):
        return await self.ok("ssh_exec", session=session, command=command, **extra)


@asynccontextmanager
async def server(args=None, env=None, roots=None):
    params = StdioServerParameters(
        command=ENV["bin"], args=args if args is not None else server_args(), env=env
    )
    list_roots = None
    if roots is not None:
        from mcp import types

        async def list_roots(_ctx):
            return types.ListRootsResult(roots=[types.Root(uri=f"file://{r}") for r in roots])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, list_roots_callback=list_roots) as session:
            await session.initialize()
            yield Client(session)


async def until(c, session, pred, what, screen=False, first=None):
    """Reads until `pred(output so far, result)` holds; bounded, never timing-dependent."""
    seen = first["output"] if first else ""
    deadline = time.monotonic() + 30
    while True:
        r = await c.ok("ssh_read_output", session=session, wait_ms=300, screen=screen)
        seen += r["output"]
        if pred(seen, r):
            return seen, r
        check(time.monotonic() < deadline, what, (seen, r))


async def healthy(c):
    """The server still answers and runs commands after whatever came before."""
    await c.connect("after")
    r = await c.run("after", "echo still-fine")
    check(r["output"] == "still-fine\n" and r["exit_code"] == 0, "server unhealthy", r)
    await c.ok("ssh_disconnect", session="after")


async def tools_list():
    async with server() as c:
        listed = (await c.session.list_tools()).tools
        names = sorted(t.name for t in listed)
        check(names == sorted(TOOLS), "tool names", names)
        for t in listed:
            check(t.input_schema and t.input_schema.get("type") == "object", "input schema", t.name)
            check(t.output_schema and t.output_schema.get("type") == "object", "output schema", t.name)
            check(t.description and len(t.description) < 200, "description", t.name)
            check(t.annotations is not None and t.annotations.read_only_hint is not None, "annotations", t.name)
        ro = {t.name for t in listed if t.annotations.read_only_hint}
        check({"ssh_list_sessions", "ssh_list_hosts", "ssh_session_status", "ssh_history", "ssh_read_file", "ssh_list_dir"} <= ro, "read-only hints", ro)
        size = len(json.dumps([t.model_dump(mode="json", exclude_none=True) for t in listed]))
        # ~4 characters per token: the whole list must cost an agent about 5k tokens at most
        # (21.5 kB with 22 tools).
        check(size <= 22000, "tool list too large for an agent's context", size)
        print(f"tools/list: {len(listed)} tools, {size} bytes of JSON")
        if os.environ.get("DUMP_TOOLS"):
            print(json.dumps([t.model_dump(mode="json", exclude_none=True) for t in listed], indent=1))


async def basics():
    async with server() as c:
        r = await c.connect("web")
        check(r["status"] == "connected" and r["name"] == "web" and r["transport"] == "russh", "connect", r)
        check(r["persistent"] is False and r["resumed"] is False, "connect flags", r)
        check(r["cwd"].startswith("/"), "cwd known at connect", r)
        await c.run("web", "cd /tmp && export GREETING='hello there'")
        r = await c.run("web", "pwd; echo $GREETING")
        check(r["output"] == "/tmp\nhello there\n", "state across calls", r)
        check(r["cwd"] == "/tmp" and r["exit_code"] == 0 and r["running"] is False, "result fields", r)
        r = await c.run("web", "exit 3")
        check(r["exit_code"] == 3, "exit code 3", r)
        r = await c.run("web", "false")
        check(r["exit_code"] == 1, "exit code 1", r)
        r = await c.run("web", "echo out; echo err >&2")
        check(r["output"] == "out\nerr\n", "stderr interleaved", r)
        r = await c.run("web", "printf '\\033[1;31mred\\033[0m\\r\\n'")
        check(r["output"] == "red\n", "ANSI stripped", r)
        r = await c.run("web", "printf '\\033[1;31mred\\033[0m\\n'", raw=True)
        check("\x1b[1;31m" in r["output"], "raw keeps escapes", r)

        sessions = (await c.ok("ssh_list_sessions"))["sessions"]
        check(len(sessions) == 1 and sessions[0]["name"] == "web" and sessions[0]["cwd"] == "/tmp", "list", sessions)
        check(sessions[0]["commands"] >= 6 and sessions[0]["running"] is None, "list counters", sessions)
        st = await c.ok("ssh_session_status", session="web")
        check(st["status"] == "connected" and st["connected_since"] and st["reconnects"] == 0, "status", st)
        h = (await c.ok("ssh_history", session="web", limit=2))["entries"]
        check([e["command"] for e in h] == ["printf '\\033[1;31mred\\033[0m\\r\\n'", "printf '\\033[1;31mred\\033[0m\\n'"], "history order", h)
        check(h[0]["source"] == "mcp" and h[0]["exit_code"] == 0 and h[0]["duration_ms"] is not None, "history fields", h)
        hosts = (await c.ok("ssh_list_hosts"))["hosts"]
        check(any(x["alias"] == "kit" and x["port"] == ENV["port"] for x in hosts), "hosts", hosts)

        # An alias from the ssh config works as host.
        r = await c.ok("ssh_connect", name="via-alias", host="kit", identity_file=ENV["key"])
        check(r["port"] == ENV["port"], "alias resolved", r)
        await c.ok("ssh_disconnect", session="via-alias")

        r = await c.ok("ssh_disconnect", session="web")
        check(r["kept_remote"] is False, "disconnect", r)
        e = await c.err("ssh_exec", session="web", command="true")
        check("no session named" in e, "closed session", e)


async def long_running():
    async with server() as c:
        await c.connect("job")
        r = await c.run("job", "echo started; sleep 1.5; echo finished; (exit 7)", timeout_ms=300)
        check(r["running"] is True and r["exit_code"] is None and "started" in r["output"], "timeout → running", r)
        e = await c.err("ssh_exec", session="job", command="echo too-early")
        check("is busy" in e and "ssh_read_output" in e and "sleep 1.5" in e, "busy error names the command and tools", e)
        r = await c.ok("ssh_read_output", session="job", wait_ms=10000)
        check(r["running"] is False and r["exit_code"] == 7 and r["output"] == "finished\n", "read_output until done", r)
        r = await c.ok("ssh_read_output", session="job")
        check(r["output"] == "" and r["exit_code"] == 7, "nothing new", r)

        # Input to a waiting `read`.
        r = await c.run("job", "read -r answer; echo got:$answer", timeout_ms=300)
        check(r["running"], "read waits", r)
        r = await c.ok("ssh_send_input", session="job", input="forty-two\n", wait_ms=5000)
        check(r["running"] is False and r["exit_code"] == 0 and "got:forty-two" in r["output"], "send_input", r)
        e = await c.err("ssh_send_input", session="job", input="x")
        check("no running command" in e and "ssh_exec" in e, "send_input with nothing running", e)

        # Interrupt a sleep.
        t = time.monotonic()
        r = await c.run("job", "sleep 30", timeout_ms=200)
        check(r["running"], "sleep runs", r)
        r = await c.ok("ssh_interrupt", session="job")
        check(r["running"] is False and r["exit_code"] == 130, "Ctrl-C ends sleep with 130", r)
        check(time.monotonic() - t < 20, "interrupt did not wait for sleep", time.monotonic() - t)
        r = await c.run("job", "sleep 30", timeout_ms=200)
        r = await c.ok("ssh_interrupt", session="job", signal="KILL", wait_ms=5000)
        check(r["running"] is False and r["exit_code"] == 137, "KILL", r)
        e = await c.err("ssh_interrupt", session="job", signal="HUP")
        check("HUP" in e and "INT" in e, "bad signal", e)

        # A shell that stopped reporting (our variables unset) is busy until an interrupt
        # sets it up again; the result says the outcome is unknown, the state stays.
        await c.run("job", "cd /tmp")
        r = await c.run("job", "unset __ss_a __ss_b", timeout_ms=1000)
        check(r["running"], "no marker can come back", r)
        e = await c.err("ssh_exec", session="job", command="true")
        check("is busy" in e and "KILL" in e, "busy error says KILL can help", e)
        r = await c.ok("ssh_interrupt", session="job", signal="KILL", wait_ms=10000)
        check(r["running"] is False and r["exit_code"] is None, "ended, outcome unknown", r)
        check(any("stopped reporting" in n for n in r["notices"]), "untracked notice", r)
        r = await c.run("job", "pwd")
        check(r["output"] == "/tmp\n" and r["exit_code"] == 0, "same shell, exact again", r)

        # Progress notifications while a command runs, when the client asks for them.
        seen = []

        async def on_progress(progress, total, message):
            seen.append((progress, message))

        r = await c.call("ssh_exec", progress=on_progress, session="job",
                         command="for i in 1 2 3; do echo tick $i; sleep 0.6; done")
        check(not r.is_error and r.structured_content["exit_code"] == 0, "exec with progress", r)
        check(r.structured_content["output"] == "tick 1\ntick 2\ntick 3\n", "progress output complete", r.structured_content)
        check(len(seen) >= 1 and "tick" in seen[-1][1], "progress notifications", seen)

        # FIFO: concurrent execs run one after another, in order.
        results = await asyncio.gather(*(c.run("job", f"echo {i}") for i in range(5)))
        check([x["output"] for x in results] == [f"{i}\n" for i in range(5)], "concurrent execs", results)


async def interactive():
    async with server() as c:
        await c.connect("repl")
        r = await c.run("repl", "python3 -q", timeout_ms=500)
        check(r["running"], "python REPL runs", r)
        r = await c.ok("ssh_send_input", session="repl", input="6 * 7\n", wait_ms=500)
        await until(c, "repl", lambda out, _: "42" in out, "REPL answered", first=r)
        r = await c.ok("ssh_send_input", session="repl", input="exit()\n", wait_ms=5000)
        if r["running"]:
            _, r = await until(c, "repl", lambda _, last: not last["running"], "REPL ended")
        check(r["exit_code"] == 0, "REPL exit code", r)

        await c.run("repl", "seq 1 500 > /tmp/mcp-e2e-less.txt")
        r = await c.run("repl", "less /tmp/mcp-e2e-less.txt", timeout_ms=300)
        check(r["running"], "less runs", r)
        _, r = await until(c, "repl", lambda _, last: "1\n2\n3\n" in last["screen"], "less drew its screen", screen=True)
        screen = r["screen"]
        check("500" not in screen, "full-screen program via screen", screen)
        r = await c.ok("ssh_send_input", session="repl", input="q", wait_ms=5000)
        check(r["running"] is False, "q leaves less", r)

        # `exit` typed into the shell: reported, and the next command gets a new shell.
        await c.run("repl", "cd /usr")
        r = await c.run("repl", "exit 4")
        check(r["shell_exited"] is True, "shell exit reported", r)
        r = await c.run("repl", "pwd")
        check(r["output"] == "/usr\n", "new shell, cwd restored", r)
        check(any("shell" in n for n in r.get("notices", [])), "restart notice", r)


async def output():
    async with server() as c:
        await c.connect("out")
        r = await c.run("out", "seq 1 200000")
        check(r["truncated"] is True and r["output_bytes"] > 1_000_000, "big output truncated", {k: r[k] for k in ("truncated", "output_bytes")})
        check(r["output"].startswith("1\n2\n3\n") and r["output"].endswith("199999\n200000\n"), "head and tail kept", r["output"][:30])
        check("left out" in r["output"] and len(r["output"]) < 31000, "marker and cap", len(r["output"]))
        r = await c.run("out", "seq 1 200000", max_output_chars=1000)
        check(len(r["output"]) < 1300, "per-call cap", len(r["output"]))
        r = await c.run("out", "head -c 100000 /dev/urandom")
        check(r["exit_code"] == 0 and isinstance(r["output"], str), "binary output", r["exit_code"])
        r = await c.run("out", "printf 'a\\000b\\033[unterminated'; printf '\\377\\376\\n'")
        check(r["exit_code"] == 0 and r["output"].startswith("ab"), "hostile bytes", r)
        big = "x" * 1_000_000
        r = await c.run("out", f"echo {big} | wc -c")
        check(r["output"].strip() == "1000001", "1 MB command", r)


async def parallel():
    async with server() as c:
        names = [f"p{i}" for i in range(6)]
        await asyncio.gather(*(c.connect(n) for n in names))
        results = await asyncio.gather(*(c.run(n, f"cd /tmp && echo {n} && sleep 0.3 && pwd") for n in names))
        for n, r in zip(names, results):
            check(r["output"] == f"{n}\n/tmp\n", "parallel result", (n, r))
        sessions = (await c.ok("ssh_list_sessions"))["sessions"]
        check(sorted(s["name"] for s in sessions) == names, "six sessions", sessions)


async def bad_inputs():
    async with server() as c:
        e = await c.err("ssh_exec", session="ghost", command="true")
        check("no session named" in e and "ghost" in e, "unknown session", e)
        await c.connect("dup")
        e = await c.err("ssh_connect", name="dup", host=TARGET, identity_file=ENV["key"])
        check("already exists" in e, "duplicate name", e)
        e = await c.err("ssh_connect", name="bad name!", host=TARGET)
        check("invalid session name" in e, "invalid name", e)
        e = await c.err("ssh_connect", name="x", host=TARGET, transport="telnet")
        check("telnet" in e, "bad transport", e)
        # Missing and wrong-typed arguments: refused with a message, never a crash.
        for args in ({"session": "dup"}, {"session": "dup", "command": 5}, {"session": "dup", "command": "true", "timeout_ms": "soon"}):
            r = await c.call("ssh_exec", **args)
            check(r.is_error and r.content[0].text, "bad arguments", (args, r))
        e = await c.err("ssh_exec", session="dup", command="true", unknown_field=1)
        check("unknown_field" in e, "unknown field", e)
        e = await c.err("ssh_connect", name="closed", host=f"{ENV['user']}@127.0.0.1:{ENV['closed_port']}")
        check("cannot connect" in e, "unreachable host", e)
        e = await c.err("ssh_connect", name="wrongkey", host=TARGET, identity_file=ENV["unauthorized_key"])
        check("authentication failed" in e, "wrong key", e)
        e = await c.err("ssh_connect", name="nokey", host=TARGET, identity_file="/nonexistent/key")
        check("/nonexistent/key" in e, "missing key file", e)
        r = await c.run("dup", "echo alive")
        check(r["output"] == "alive\n", "existing session unaffected", r)
        await healthy(c)
    # A changed host key: refused, naming the known_hosts line.
    async with server(server_args(known_hosts=ENV["wrong_known_hosts"])) as c:
        e = await c.err("ssh_connect", name="mitm", host=TARGET, identity_file=ENV["key"])
        check("HOST KEY CHANGED" in e and "line 3" in e, "changed host key", e)
        sessions = (await c.ok("ssh_list_sessions"))["sessions"]
        check(sessions == [], "no session left behind", sessions)


async def policy():
    config = os.path.join(ENV["tmp"], "policy.toml")
    with open(config, "w") as f:
        f.write(
            '[policy]\nallowed_hosts = ["127.0.0.1", "kit"]\ndisabled_tools = ["ssh_history"]\n'
            '[[policy.hosts]]\npattern = "127.0.0.1"\nread_only = true\ndeny = ["*shadow*"]\n'
        )
    async with server(server_args(extra=["--config", config])) as c:
        names = sorted(t.name for t in (await c.session.list_tools()).tools)
        check("ssh_history" not in names, "disabled tool hidden", names)
        e = await c.err("ssh_connect", name="elsewhere", host=f"{ENV['user']}@localhost:{ENV['port']}", identity_file=ENV["key"])
        check("allowed_hosts" in e, "host refused", e)
        await c.connect("ro")
        r = await c.run("ro", "ls / | head -3")
        check(r["exit_code"] == 0, "inspection allowed", r)
        e = await c.err("ssh_exec", session="ro", command="touch /tmp/mcp-e2e-nope")
        check("read-only" in e, "write refused", e)
        e = await c.err("ssh_exec", session="ro", command="cat /etc/shadow")
        check("deny" in e, "deny pattern", e)
        e = await c.err("ssh_send_input", session="ro", input="rm -rf /tmp/x\n")
        check("typing input" in e, "input refused on a read-only host", e)
        e = await c.err("ssh_exec", session="ro", command="echo \\\"; touch /tmp/mcp-e2e-nope; echo \\\"")
        check("read-only" in e, "escaped quotes do not hide a second command", e)


async def start_http_server(env, extra=()):
    """Starts the server over HTTP on a free port; returns (process, url)."""
    proc = await asyncio.create_subprocess_exec(
        ENV["bin"], *server_args(), "--http", "127.0.0.1:0", *extra,
        env=env, stderr=asyncio.subprocess.PIPE)
    seen = []
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), timeout=30)).decode()
        check(line, "http server exited before listening", seen)
        seen.append(line)
        if "listening on" in line:
            return proc, line.split("listening on ")[1].strip()


async def stop(proc):
    proc.terminate()
    await asyncio.wait_for(proc.wait(), timeout=30)


def post(url, body, headers):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}}


def exchange(url, body, headers):
    """One POST: (status, lower-cased headers, body text)."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()


async def http():
    import httpx2
    from mcp.client.streamable_http import streamable_http_client
    token = "e2e-token-0123456789abcdef"
    proc, url = await start_http_server(dict(os.environ, SSH_SESSION_MCP_TOKEN=token))
    try:
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": token}):
            status = await asyncio.to_thread(post, url, ping, headers)
            check(status == 401, "request without the right token refused with 401", (headers, status))
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http_client:
            async with streamable_http_client(url, http_client=http_client) as (read, write, *_):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    c = Client(session)
                    await c.connect("over-http")
                    await c.run("over-http", "cd /tmp")
                    r = await c.run("over-http", "pwd")
                    check(r["output"] == "/tmp\n", "exec over http", r)
    finally:
        await stop(proc)
    # No token given: one is generated into the token file (0600) and reused next time.
    token_file = os.path.join(ENV["tmp"], "token")
    env = {k: v for k, v in os.environ.items() if k != "SSH_SESSION_MCP_TOKEN"}
    proc, url = await start_http_server(env, ["--token-file", token_file])
    try:
        check(os.stat(token_file).st_mode & 0o777 == 0o600, "token file mode", oct(os.stat(token_file).st_mode))
        generated = open(token_file).read().strip()
        check(len(generated) == 64, "generated token", generated)
    finally:
        await stop(proc)
    proc, url = await start_http_server(env, ["--token-file", token_file, "--allowed-host", "mcp.example.test"])
    try:
        check(open(token_file).read().strip() == generated, "token reused", token_file)
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}}
        status = await asyncio.to_thread(post, url, init, {"Authorization": f"Bearer {generated}"})
        check(status == 200, "the kept token is accepted", status)
        # The scheme is case-insensitive; Host headers beyond loopback only when allowed.
        status = await asyncio.to_thread(post, url, init, {"Authorization": f"bearer {generated}"})
        check(status == 200, "lower-case scheme accepted", status)
        status = await asyncio.to_thread(post, url, init, {"Authorization": f"Bearer {generated}", "Host": "mcp.example.test"})
        check(status == 200, "--allowed-host accepted", status)
        status = await asyncio.to_thread(post, url, init, {"Authorization": f"Bearer {generated}", "Host": "evil.example.test"})
        check(status == 403, "unknown Host refused (DNS rebinding)", status)
    finally:
        await stop(proc)
    # An MCP session idle past session_idle_timeout_s ends, but a call still running is
    # not idleness: a 4 s command in a session that expires after 2 s idle completes.
    config = os.path.join(ENV["tmp"], "idle.toml")
    with open(config, "w") as f:
        f.write("[http]\nsession_idle_timeout_s = 2\n")
    proc, url = await start_http_server(dict(os.environ, SSH_SESSION_MCP_TOKEN=token), ["--config", config])
    try:
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http_client:
            async with streamable_http_client(url, http_client=http_client) as (read, write, *_):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    c = Client(session)
                    await c.connect("slow")
                    r = await asyncio.wait_for(c.run("slow", "sleep 4; echo done", timeout_ms=20000), 30)
                    check(r["output"] == "done\n", "a call longer than the idle timeout", r)
        # The same with bare POSTs (the SDK also holds a GET stream open, which counts too).
        auth = {"Authorization": f"Bearer {token}"}
        status, headers, _ = await asyncio.to_thread(exchange, url, INIT, auth)
        sid = {**auth, "Mcp-Session-Id": headers["mcp-session-id"]}
        await asyncio.to_thread(exchange, url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "ssh_exec", "arguments": {
            "session": "slow", "command": "sleep 4; echo raw-done", "timeout_ms": 20000}}}
        status, _, text = await asyncio.to_thread(exchange, url, call, sid)
        check(status == 200 and "raw-done" in text, "a 4 s call over bare POSTs", (status, text))
        ping = {"jsonrpc": "2.0", "id": 3, "method": "ping"}
        status, _, _ = await asyncio.to_thread(exchange, url, ping, sid)
        check(status == 200, "the session lives on after its long call", status)
        await asyncio.sleep(3.5)
        status, _, _ = await asyncio.to_thread(exchange, url, ping, sid)
        check(status == 404, "then expires once idle for 2 s", status)
    finally:
        await stop(proc)


async def persistent():
    async with server() as c:
        r = await c.connect("keep", persistent=True)
        check(r["persistent"] is True and r["resumed"] is False, "persistent connect", r)
        # A unique sleep (its argument names this run) to find, and to end, afterwards.
        await c.run("keep", f"cd /tmp && export KEPT=yes && (sleep {SLEEP} &) && echo started")
    # The server process is gone (the client closed it); a new one re-adopts the shell.
    async with server() as c:
        r = await c.connect("keep", persistent=True)
        check(r["resumed"] is True, "re-adopted after a server restart", r)
        r = await c.run("keep", f"pwd; echo $KEPT; pgrep -f 'sleep {SLEEP}' >/dev/null && echo bg-alive; pkill -f 'sleep {SLEEP}'")
        check(r["output"].startswith("/tmp\nyes\nbg-alive\n"), "state survived", r)
        r = await c.ok("ssh_disconnect", session="keep")
    async with server() as c:
        r = await c.connect("keep", persistent=True)
        check(r["resumed"] is False, "disconnect killed the remote session", r)
        # keep_remote on a persistent session keeps it: the next connect re-adopts it.
        await c.run("keep", "export KEPT=again")
        r = await c.ok("ssh_disconnect", session="keep", keep_remote=True)
        check(r["kept_remote"] is True and "notices" not in r, "kept_remote on a persistent session", r)
        r = await c.connect("keep", persistent=True)
        check(r["resumed"] is True, "re-adopted after keep_remote", r)
        r = await c.run("keep", "echo $KEPT")
        check(r["output"] == "again\n", "the kept shell's state", r)
        await c.ok("ssh_disconnect", session="keep")


async def disconnect():
    async with server() as c:
        await c.connect("plain")
        pid = (await c.run("plain", "echo $$"))["output"].strip()
        check(pid.isdigit(), "shell pid", pid)
        # keep_remote on a session without tmux: nothing can be kept, and the answer says so.
        r = await c.ok("ssh_disconnect", session="plain", keep_remote=True)
        check(r["kept_remote"] is False, "kept_remote is false: the shell was not kept", r)
        check(any("keep_remote" in n and "not persistent" in n for n in r.get("notices", [])), "notice", r)
        await c.connect("probe")
        deadline = time.monotonic() + 10
        while (await c.run("probe", f"kill -0 {pid} 2>/dev/null && echo alive || echo gone"))["output"] != "gone\n":
            check(time.monotonic() < deadline, "the plain session's shell still runs", pid)
            await asyncio.sleep(0.2)
        # Without keep_remote: no notice.
        r = await c.ok("ssh_disconnect", session="probe")
        check(r["kept_remote"] is False and "notices" not in r, "plain disconnect", r)


async def link_lost():
    async with server() as c:
        await c.connect("flaky")
        await c.run("flaky", "cd /tmp && export KEPT=1")
        # The shell's parent is sshd's process for this connection: killing it drops the
        # link while `sleep 10` runs.
        e = await c.err("ssh_exec", session="flaky", command="(sleep 0.5; kill -9 $PPID) & sleep 10", timeout_ms=20000)
        check("connection was lost" in e and "outcome is unknown" in e, "in-flight command reported lost", e)
        deadline = time.monotonic() + 30
        while True:
            r = await c.call("ssh_exec", session="flaky", command="pwd; echo $KEPT")
            if not r.is_error:
                break
            check(time.monotonic() < deadline, "never reconnected", r.content[0].text)
            await asyncio.sleep(0.2)
        r = r.structured_content
        check(r["output"] == "/tmp\n1\n", "state restored after reconnecting", r)
        check(any("re-established" in n for n in r.get("notices", [])), "reconnect notice", r)
        st = await c.ok("ssh_session_status", session="flaky")
        check(st["reconnects"] >= 1 and st["last_error"], "status after reconnect", st)


async def cancel():
    async with server() as c:
        await c.connect("stuck")
        await c.run("stuck", "cd /tmp")
        r = await c.run("stuck", "trap '' INT; sleep 60", timeout_ms=300)
        check(r["running"] is True, "the runaway runs", r)
        rep = await c.ok("ssh_cancel", session="stuck")
        check(rep["tried"] == ["INT", "TERM"], "INT ignored, TERM ended it", rep)
        check(len(rep["steps"]) >= 2 and all(isinstance(s, str) and s for s in rep["steps"]), "steps in words", rep)
        check(rep["shell_replaced"] is False and rep["connection_restarted"] is False, "no last resort needed", rep)
        check(rep["cwd"] == "/tmp" and rep["state"] == "exited", "ended in place", rep)
        e = await c.err("ssh_cancel", session="stuck")
        check("no running command" in e, "nothing left to cancel", e)
        e = await c.err("ssh_cancel", session="nope")
        check("nope" in e, "an unknown session is named", e)
        r = await c.run("stuck", "echo after")
        check(r["output"] == "after\n", "usable after the cancel", r)
        h = (await c.ok("ssh_history", session="stuck"))["entries"]
        check([e["command"] for e in h[-2:]] == ["trap '' INT; sleep 60", "echo after"], "history", h)
        check(all(e["source"] == "mcp" for e in h) and h[-1]["cwd"] == "/tmp", "sources and cwd", h)


async def files():
    import base64
    import hashlib

    local = os.path.join(ENV["tmp"], "files")
    os.makedirs(local)
    remote = f"/tmp/mcp-files-{os.getpid()}"
    async with server(roots=[local]) as c:
        await c.connect("f")
        await c.run("f", f"rm -rf {remote} && mkdir -p {remote} && cd {remote}")
        # Relative paths start at the session's cwd.
        w = await c.ok("ssh_write_file", session="f", path="conf/app.toml", content="debug = false\n", create_dirs=True)
        check(w["path"] == f"{remote}/conf/app.toml" and w["size"] == 14, "write", w)
        check(w["sha256"] == hashlib.sha256(b"debug = false\n").hexdigest(), "write hash", w)
        r = await c.ok("ssh_read_file", session="f", path="conf/app.toml")
        check(r["content"] == "debug = false\n" and r["encoding"] == "utf-8" and r["sha256"] == w["sha256"], "read", r)
        check(r["mode"] == "0644" and r["truncated"] is False and r["size"] == 14, "read fields", r)

        # Someone changes it: the guarded write is refused with the current hash, unchanged.
        await c.run("f", "echo 'port = 1' >> conf/app.toml")
        res = await c.call("ssh_write_file", session="f", path="conf/app.toml", content="debug = true\n", expected_sha256=r["sha256"])
        check(res.is_error, "guarded write refused", res)
        sc = res.structured_content
        now = (await c.run("f", "sha256sum conf/app.toml | cut -d' ' -f1"))["output"].strip()
        check(sc["error"] == "conflict" and sc["current_sha256"] == now and sc["expected_sha256"] == r["sha256"], "conflict fields", sc)
        check(now in res.content[0].text and "nothing was written" in res.content[0].text, "conflict text", res.content)
        check((await c.run("f", "cat conf/app.toml"))["output"] == "debug = false\nport = 1\n", "unchanged", None)
        w = await c.ok("ssh_write_file", session="f", path="conf/app.toml", content="debug = true\n", expected_sha256=now, mode="600")
        check((await c.run("f", "cat conf/app.toml; stat -c %a conf/app.toml"))["output"] == "debug = true\n600\n", "guarded write with the new hash", None)

        # Binary content goes as base64 both ways; ranges page through.
        blob = bytes(range(256)) * 40
        await c.ok("ssh_write_file", session="f", path="blob.bin", content=base64.b64encode(blob).decode(), encoding="base64")
        r = await c.ok("ssh_read_file", session="f", path="blob.bin", offset=200, limit=100)
        check(r["encoding"] == "base64" and base64.b64decode(r["content"]) == blob[200:300], "binary range", r)
        check(r["truncated"] is True and r["size"] == len(blob) and r["sha256"] == hashlib.sha256(blob).hexdigest(), "range fields", r)

        entries = (await c.ok("ssh_list_dir", session="f"))["entries"]
        check([(e["name"], e["type"]) for e in entries] == [("blob.bin", "file"), ("conf", "dir")], "list", entries)
        check(entries[0]["size"] == len(blob) and entries[0]["modified"], "list fields", entries)
        e = await c.err("ssh_read_file", session="f", path="nope.txt")
        check(f"{remote}/nope.txt" in e and "no such file" in e, "missing file", e)
        e = await c.err("ssh_list_dir", session="f", path="blob.bin")
        check("not a directory" in e, "list a file", e)
        e = await c.err("ssh_write_file", session="f", path="x", content="x", mode="999")
        check("octal" in e, "bad mode", e)

        # Transfers: only under the client's roots, with progress.
        data = os.urandom(3 << 20)
        with open(os.path.join(local, "up.bin"), "wb") as f:
            f.write(data)
        seen = []

        async def progress(done, total, message):
            seen.append((done, total))
        res = await c.call("ssh_upload", progress=progress, session="f", local_path=os.path.join(local, "up.bin"), remote_path="up.bin")
        check(not res.is_error, "upload", res.content)
        t = res.structured_content
        check(t["bytes"] == len(data) and t["files"] == 1 and t["sha256"] == hashlib.sha256(data).hexdigest(), "upload result", t)
        check(seen and seen[-1][1] == len(data), "upload progress", seen)
        t = await c.ok("ssh_download", session="f", remote_path="conf", local_path=os.path.join(local, "conf-copy"))
        check(t["files"] == 1 and open(os.path.join(local, "conf-copy", "app.toml")).read() == "debug = true\n", "download a tree", t)
        t = await c.ok("ssh_download", session="f", remote_path="up.bin", local_path=os.path.join(local, "down.bin"))
        check(open(os.path.join(local, "down.bin"), "rb").read() == data, "download bytes", t)
        e = await c.err("ssh_download", session="f", remote_path="up.bin", local_path="/etc/mcp-e2e-nope")
        check("outside the directories" in e and local in e, "outside the roots", e)
        e = await c.err("ssh_upload", session="f", local_path=os.path.join(local, "..", "..", "..", "etc", "passwd"), remote_path="x")
        check("outside the directories" in e, "dot-dot does not escape", e)
        e = await c.err("ssh_upload", session="f", local_path="up.bin", remote_path="x")
        check("absolute" in e, "relative local path", e)
        await c.run("f", f"cd / && rm -rf {remote}")
        await healthy(c)
    # Without roots or local_dirs, no local path is open.
    async with server() as c:
        await c.connect("g")
        e = await c.err("ssh_download", session="g", remote_path="/etc/hostname", local_path=os.path.join(local, "h"))
        check("no local directory is open" in e, "no roots", e)
    # A read-only host reads files, and refuses writes and uploads.
    config = os.path.join(ENV["tmp"], "ro.toml")
    with open(config, "w") as f:
        f.write('[[policy.hosts]]\npattern = "127.0.0.1"\nread_only = true\n')
    async with server(server_args(extra=["--config", config]), roots=[local]) as c:
        await c.connect("ro")
        check((await c.ok("ssh_read_file", session="ro", path="/etc/hostname"))["size"] > 0, "read on read-only", None)
        e = await c.err("ssh_write_file", session="ro", path="/tmp/mcp-ro-nope", content="x")
        check("read-only" in e, "write refused", e)
        e = await c.err("ssh_upload", session="ro", local_path=os.path.join(local, "up.bin"), remote_path="/tmp/mcp-ro-nope")
        check("read-only" in e, "upload refused", e)
        r = await c.run("ro", "ls /tmp/mcp-ro-nope")
        check(r["exit_code"] != 0, "nothing written", r)


async def net():
    import http.server
    import socket
    import threading

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"hello through the tunnel"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    target = f"127.0.0.1:{httpd.server_address[1]}"

    def port(listen):
        return int(listen.rsplit(":", 1)[1])

    def fetch(p):
        with urllib.request.urlopen(f"http://127.0.0.1:{p}/", timeout=20) as r:
            return r.read().decode()

    def socks_get(p):
        s = socket.create_connection(("127.0.0.1", p), timeout=20)
        s.sendall(b"\x05\x01\x00")
        check(s.recv(2) == b"\x05\x00", "socks hello", None)
        s.sendall(b"\x05\x01\x00\x03" + bytes([9]) + b"localhost" + httpd.server_address[1].to_bytes(2, "big"))
        check(s.recv(10)[:2] == b"\x05\x00", "socks connect", None)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        return data.decode().split("\r\n\r\n", 1)[1]

    async with server() as c:
        await c.connect("n1")
        await c.connect("n2")
        r = await c.ok("ssh_exec_many", sessions=["n1", "n2", "nope"], command="echo \"$((6*7))\"")
        res = r["results"]
        check([x["session"] for x in res] == ["n1", "n2", "nope"], "order", res)
        check(all(x["output"] == "42\n" and x["exit_code"] == 0 and not x["running"] for x in res[:2]), "ran", res)
        check("no session named" in res[2]["error"] and res[2]["exit_code"] is None, "unknown session", res)
        r = await c.ok("ssh_exec_many", sessions=["n1", "n2"], command="sleep 5", timeout_ms=200)
        check(all(x["running"] for x in r["results"]), "timeout: running", r)
        await c.ok("ssh_interrupt", session="n1")
        await c.ok("ssh_interrupt", session="n2")

        info = await c.ok("ssh_host_info", session="n1")
        check(info["kernel"].startswith("Linux") and info["cpus"] >= 1 and len(info["load"]) == 3, "host info", info)
        check(info["memory_total"] >= info["memory_available"] > 0 and any(d["mount"] == "/" for d in info["disks"]), "host info memory/disks", info)

        l = await c.ok("ssh_tunnel_open", session="n1", kind="local", target=target)
        check(l["listen"].startswith("127.0.0.1:") and l["target"] == target, "local tunnel", l)
        check(await asyncio.to_thread(fetch, port(l["listen"])) == "hello through the tunnel", "GET through -L", None)
        d = await c.ok("ssh_tunnel_open", session="n1", kind="socks")
        check(d["target"] is None, "socks has no target", d)
        check(await asyncio.to_thread(socks_get, port(d["listen"])) == "hello through the tunnel", "GET through SOCKS", None)
        rt = await c.ok("ssh_tunnel_open", session="n2", kind="remote", target=target)
        got = await c.run("n2", f"exec 3<>/dev/tcp/127.0.0.1/{port(rt['listen'])} && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && sed -n '$p' <&3; exec 3<&-")
        check(got["output"] == "hello through the tunnel", "GET through -R from the host", got)
        tunnels = (await c.ok("ssh_tunnel_list"))["tunnels"]
        check([t["id"] for t in tunnels] == [l["id"], d["id"], rt["id"]], "listed", tunnels)
        check(all(t["bytes_in"] > 100 and t["bytes_out"] > 10 for t in tunnels), "byte counts", tunnels)
        check([t["kind"] for t in tunnels] == ["local", "socks", "remote"], "kinds", tunnels)
        await c.ok("ssh_tunnel_close", id=l["id"])
        e = await c.err("ssh_tunnel_close", id=l["id"])
        check("no tunnel" in e and d["id"] in e, "closed twice", e)
        e = await c.err("ssh_tunnel_open", session="n1", kind="sideways", target=target)
        check("local" in e and "socks" in e, "bad kind", e)
        e = await c.err("ssh_tunnel_open", session="n1", kind="local")
        check("target" in e, "missing target", e)
        e = await c.err("ssh_tunnel_open", session="n1", kind="local", target="nohost")
        check("HOST:PORT" in e, "bad target", e)
        e = await c.err("ssh_tunnel_open", session="n1", kind="socks", listen="0.0.0.0:0")
        check("loopback" in e and "allow_public_tunnels" in e, "public binds refused", e)
        await c.ok("ssh_disconnect", session="n1")
        tunnels = (await c.ok("ssh_tunnel_list"))["tunnels"]
        check([t["id"] for t in tunnels] == [rt["id"]], "a session's tunnels close with it", tunnels)
        await healthy(c)
    config = os.path.join(ENV["tmp"], "ro-net.toml")
    with open(config, "w") as f:
        f.write('[[policy.hosts]]\npattern = "127.0.0.1"\nread_only = true\n')
    async with server(server_args(extra=["--config", config])) as c:
        await c.connect("ro")
        e = await c.err("ssh_tunnel_open", session="ro", kind="socks")
        check("read-only" in e, "tunnels refused on a read-only host", e)
        r = await c.ok("ssh_exec_many", sessions=["ro"], command="touch /tmp/mcp-e2e-nope")
        check("read-only" in r["results"][0]["error"], "policy per session in exec_many", r)
        r = await c.ok("ssh_exec_many", sessions=["ro"], command="uname -s")
        check(r["results"][0]["output"] == "Linux\n", "inspection allowed", r)
    httpd.shutdown()


async def secrets():
    async with server() as c:
        await c.connect("pw")
        r = await c.run("pw", "printf '[sudo] password for deploy: '; read -s pw; echo; echo \"got ${#pw}\"", timeout_ms=500)
        check(r["running"] and r["waiting_for"] == "password" and r["prompt"] == "[sudo] password for deploy:", "prompt reported", r)
        r = await c.ok("ssh_read_output", session="pw")
        check(r["waiting_for"] == "password", "still waiting", r)
        r = await c.ok("ssh_send_input", session="pw", input="hunter2\n", secret=True, wait_ms=5000)
        check(r["exit_code"] == 0 and r["output"] == "\ngot 7\n" and "waiting_for" not in r, "answered", r)
        # A program that echoes what is typed: the secret does not come back.
        r = await c.run("pw", "printf 'Password: '; read line; echo \"you said $line\"", timeout_ms=500)
        check(r["waiting_for"] == "password", "second prompt", r)
        r = await c.ok("ssh_send_input", session="pw", input="s3cret-value\n", secret=True, wait_ms=5000)
        check("s3cret-value" not in r["output"] and "you said [secret]" in r["output"], "scrubbed", r)
        r = await c.run("pw", "echo done")
        check("waiting_for" not in r, "no prompt on a finished command", r)


SCENARIOS = {f.__name__: f for f in (secrets, net, files, cancel, disconnect, link_lost, tools_list, basics, long_running, interactive, output, parallel, bad_inputs, policy, http, persistent)}

if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(SCENARIOS[sys.argv[1]](), timeout=240))
    print(f"{sys.argv[1]}: ok")
