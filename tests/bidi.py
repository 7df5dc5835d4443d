"""A headless Firefox driven over WebDriver BiDi, the W3C protocol Firefox speaks itself
(no geckodriver, which Debian does not package): just the commands the page test needs."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

_LISTENING = re.compile(rb"WebDriver BiDi listening on (ws://\S+)")


class BidiError(RuntimeError):
    """Firefox answered a command with an error, or did not start."""


class Firefox:
    """``firefox --headless --remote-debugging-port 0`` with a fresh profile, one session
    and its first tab. Every method is one BiDi command (or a poll of one)."""

    def __init__(self, binary: str, profile: Path, timeout: float = 60.0):
        import websocket  # websocket-client, which selenium brings

        profile.mkdir(parents=True, exist_ok=True)
        self.profile = profile
        self.process = subprocess.Popen(
            [binary, "--headless", "--no-remote", "--profile", str(profile)]
            + ["--remote-debugging-port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url, seen, deadline = None, b"", time.monotonic() + timeout
        while url is None and time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line and self.process.poll() is not None:
                break
            seen += line
            if match := _LISTENING.search(line):
                url = match.group(1).decode()
        if url is None:
            self.process.kill()
            raise BidiError(f"firefox did not start its BiDi server:\n{seen.decode()[-2000:]}")
        # Keep reading stderr so Firefox never blocks on a full pipe.
        self._drain = subprocess.Popen(
            ["cat"], stdin=self.process.stderr, stdout=subprocess.DEVNULL
        )
        self._ids = itertools.count(1)
        self.socket = websocket.create_connection(
            url + "/session",
            timeout=timeout,
            suppress_origin=True,  # Firefox refuses Origin
        )
        self.send("session.new", capabilities={})
        self.context = self.send("browsingContext.getTree")["contexts"][0]["context"]

    def send(self, method: str, **params) -> dict:
        """Run one command and return its result (events that arrive meanwhile are dropped)."""
        ident = next(self._ids)
        self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") != ident:
                continue
            if message.get("type") == "error":
                raise BidiError(f"{method}: {message.get('error')}: {message.get('message')}")
            return message["result"]

    def get(self, url: str) -> None:
        self.send("browsingContext.navigate", context=self.context, url=url, wait="complete")

    def viewport(self, width: int, height: int) -> None:
        self.send(
            "browsingContext.setViewport",
            context=self.context,
            viewport={"width": width, "height": height},
        )

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (awaited); a DOM node as its reference."""
        result = self.send(
            "script.evaluate",
            expression=expression,
            target={"context": self.context},
            awaitPromise=True,
            resultOwnership="root",
        )
        if result["type"] == "exception":
            raise BidiError(f"{expression}: {result['exceptionDetails']['text']}")
        return _value(result["result"])

    def wait_for(self, expression: str, timeout: float = 120.0):
        """Poll until ``expression`` is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := self.evaluate(expression):
                return value
            time.sleep(0.2)
        raise BidiError(f"timed out after {timeout:.0f} s waiting for {expression}")

    def set_files(self, selector: str, files: list[Path]) -> None:
        node = self.evaluate(f"document.querySelector({json.dumps(selector)})")
        self.send(
            "input.setFiles",
            context=self.context,
            element={"sharedId": node["sharedId"]},
            files=[str(f) for f in files],
        )

    def press(self, key: str) -> None:
        actions = [{"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]
        self.send(
            "input.performActions",
            context=self.context,
            actions=[{"type": "key", "id": "keyboard", "actions": actions}],
        )

    def quit(self) -> None:
        try:
            self.send("session.end")
            self.socket.close()
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._drain.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)


def _value(remote: dict):
    """A BiDi RemoteValue as Python (objects and arrays recursively; nodes kept as is)."""
    kind = remote["type"]
    if kind in ("undefined", "null"):
        return None
    if kind == "node":
        return remote
    if kind == "array":
        return [_value(v) for v in remote.get("value", [])]
    if kind == "object":
        return {k: _value(v) for k, v in remote.get("value", [])}
    if kind == "number" and isinstance(remote["value"], str):  # NaN, Infinity, -0
        return float(remote["value"])
    return remote.get("value")
