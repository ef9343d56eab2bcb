"""Runs an Argo CD custom health check (Lua) on one Kubernetes object, as Argo CD does, with a real Lua 5.1.

    run_health.py SCRIPT.lua < object.json    ->    {"status": "...", "message": "..."}

Argo CD runs health scripts with gopher-lua (Lua 5.1 semantics): the object is the global `obj`, converted from
its JSON form the way Argo CD's `decodeValue` does (objects -> tables, arrays -> 1-based sequences, null -> nil,
numbers -> Lua numbers), and the chunk returns the table `hs`. Here the interpreter is Lua 5.1 itself (lupa.lua51,
pinned in tools/requirements.txt). Exit status: 0 with the JSON on stdout; 1 when the script errors or returns
something Argo CD would reject (message on stderr); 2 when lupa is missing.
"""

import json
import sys

try:
    from lupa.lua51 import LuaRuntime
except ImportError as error:
    sys.stderr.write(
        f"lupa (Lua 5.1 for Python, pinned in tools/requirements.txt) is missing from this venv ({error}): "
        "run `make tools`\n"
    )
    sys.exit(2)

# Argo CD's health statuses (gitops-engine health.HealthStatusCode).
STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def to_lua(lua, value):
    """A JSON value as Argo CD hands it to Lua."""
    if isinstance(value, dict):
        table = lua.table()
        for key, item in value.items():
            if item is not None:
                table[key] = to_lua(lua, item)
        return table
    if isinstance(value, list):
        table = lua.table()
        for index, item in enumerate(value, start=1):
            if item is not None:
                table[index] = to_lua(lua, item)
        return table
    return value  # str, bool, int, float (None never reaches here)


def fail(message):
    sys.stderr.write(message + "\n")
    sys.exit(1)


def main():
    if len(sys.argv) != 2:
        fail("usage: run_health.py SCRIPT.lua < object.json")
    with open(sys.argv[1], encoding="utf-8") as file:
        script = file.read()
    obj = json.load(sys.stdin)
    lua = LuaRuntime(unpack_returned_tuples=True, register_eval=False, register_builtins=False)
    if lua.eval("_VERSION") != "Lua 5.1":
        fail(f"expected Lua 5.1 (gopher-lua's semantics), got {lua.eval('_VERSION')}")
    lua.globals().obj = to_lua(lua, obj)
    try:
        hs = lua.execute(script)
    except Exception as error:  # LuaError, LuaSyntaxError: Argo CD would show this error on the resource
        fail(f"the health script failed: {error}")
    if lua.eval("type")(hs) != "table":
        fail(f"the health script returned {hs!r}, not a table")
    status, message = hs["status"], hs["message"]
    if status not in STATUSES:
        fail(f"the health script returned status {status!r}, which Argo CD does not know")
    if message is not None and not isinstance(message, str):
        fail(f"the health script returned message {message!r}, not a string")
    json.dump({"status": status, "message": message}, sys.stdout)
    sys.stdout.write("\n")


main()
