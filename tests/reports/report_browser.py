"""Open an HTML page in headless Chromium through the DevTools protocol (standard library only).

Collects console errors, uncaught exceptions and failed loads, checks every ``img``/``object``
source and every ``a href`` (HTML and inline SVG), and saves a full-page screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1280,900",
)

COLLECT_JS = r"""
(() => {
  const out = {title: document.title, images: [], objects: [], links: [], ids: []};
  for (const img of document.querySelectorAll('img')) {
    out.images.push({src: img.getAttribute('src'), url: img.currentSrc || img.src,
                     ok: img.complete && img.naturalWidth > 0});
  }
  for (const obj of document.querySelectorAll('object')) {
    out.objects.push({src: obj.getAttribute('data'), url: obj.data});
  }
  for (const a of document.querySelectorAll('a')) {
    const href = a.getAttribute('href') || a.getAttributeNS('http://www.w3.org/1999/xlink', 'href');
    if (href !== null) out.links.push(href);
  }
  for (const el of document.querySelectorAll('[id]')) out.ids.push(el.id);
  return JSON.stringify(out);
})()
"""


def find_chromium() -> str | None:
    """Path of a Chromium binary, or ``None``."""
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


def require_chromium() -> str:
    """Chromium's path; FAIL (not skip) when it is absent: the reports must be checked in a browser."""
    import pytest

    binary = find_chromium()
    if binary is None:
        pytest.fail(
            "headless Chromium not found (/usr/bin/chromium): run .ci/setup_chromium.sh", pytrace=False
        )
    return binary


class _WebSocket:
    """Just enough of RFC 6455 for the DevTools protocol (client side, text frames)."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parsed = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {parsed.path} HTTP/1.1\r\nHost: {parsed.hostname}:{parsed.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools websocket handshake failed")
            response += chunk
        if b" 101 " not in response.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"DevTools websocket refused: {response[:200]!r}")
        self.buffer = response.split(b"\r\n\r\n", 1)[1]

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buffer)))
            if not chunk:
                raise ConnectionError("DevTools websocket closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def send(self, text: str) -> None:
        payload = text.encode()
        header = bytearray([0x81])
        n = len(payload)
        if n < 126:
            header.append(0x80 | n)
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        header += mask
        self.sock.sendall(bytes(header) + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            opcode, n = first & 0x0F, second & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            if opcode == 8:
                raise ConnectionError("DevTools websocket closed by the browser")
            if opcode in (9, 10):
                continue
            message += payload
            if first & 0x80:
                return message.decode("utf-8", errors="replace")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


@dataclass
class PageCheck:
    """What the browser saw on one page."""

    url: str
    title: str = ""
    console_errors: list[str] = field(default_factory=list)
    failed_loads: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    broken_links: list[str] = field(default_factory=list)
    n_images: int = 0
    n_links: int = 0
    screenshot: Path | None = None

    @property
    def problems(self) -> list[str]:
        """Every problem found, one line each."""
        return (
            [f"console: {e}" for e in self.console_errors]
            + [f"failed load: {e}" for e in self.failed_loads]
            + [f"broken image: {e}" for e in self.broken_images]
            + [f"broken link: {e}" for e in self.broken_links]
        )


class Browser:
    """A headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, binary: str, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="bba-chromium-")
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"{binary} did not start (exit code {self.proc.returncode})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        page_url = None
        while page_url is None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
                targets = json.loads(response.read())
            page_url = next((t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page"), None)
            if page_url is None:
                if time.monotonic() > deadline:
                    raise RuntimeError("no page target in headless Chromium")
                time.sleep(0.1)
        self.ws = _WebSocket(page_url, timeout=timeout)
        self.next_id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params: object) -> dict:
        """Send one command and wait for its result (events received meanwhile are kept)."""
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_event(self, name: str, timeout: float) -> None:
        """Wait until event ``name`` arrived (or ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        self.ws.sock.settimeout(timeout)
        while not any(e.get("method") == name for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not received within {timeout} s")
            self.events.append(json.loads(self.ws.recv()))

    def check(
        self, page: Path, screenshot: Path | None = None, max_height: int = 16000, anchor: str | None = None
    ) -> PageCheck:
        """Load ``page``, collect problems and save a full-page PNG to ``screenshot`` (from the
        element with id ``anchor`` down, when given)."""
        page = Path(page).resolve()
        result = PageCheck(url=page.as_uri())
        self.events.clear()
        self.call("Page.navigate", url=result.url)
        self.wait_event("Page.loadEventFired", self.timeout)
        time.sleep(0.5)
        data = json.loads(
            self.call("Runtime.evaluate", expression=COLLECT_JS, returnByValue=True)["result"]["value"]
        )
        result.title = data["title"]
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                result.console_errors.append(
                    details.get("exception", {}).get("description") or details.get("text", "")
                )
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                result.console_errors.append(
                    " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                )
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                result.console_errors.append(f"{entry.get('text', '')} {entry.get('url', '')}".strip())
            elif method == "Network.loadingFailed":
                result.failed_loads.append(f"{params.get('errorText')} (request {params.get('requestId')})")
        ids = set(data["ids"])
        result.n_images = len(data["images"]) + len(data["objects"])
        for image in data["images"]:
            if not image["ok"] or not _resolves(image["src"] or "", page, ids):
                result.broken_images.append(str(image["src"]))
        for obj in data["objects"]:
            if not _resolves(obj["src"] or "", page, ids):
                result.broken_images.append(str(obj["src"]))
        result.n_links = len(data["links"])
        result.broken_links = [href for href in data["links"] if not _resolves(href, page, ids)]
        if screenshot is not None:
            metrics = self.call("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            top = 0
            if anchor is not None:
                where = f"(() => {{ const e = document.getElementById({json.dumps(anchor)}); "
                where += "return e ? Math.round(e.getBoundingClientRect().top + window.scrollY) : 0; })()"
                top = int(
                    self.call("Runtime.evaluate", expression=where, returnByValue=True)["result"]["value"]
                )
            height = int(min(max_height, size["height"] - top))
            self.call(
                "Emulation.setDeviceMetricsOverride",
                width=1280,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
            clip = {"x": 0, "y": top, "width": 1280, "height": height, "scale": 1}
            shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            self.call("Emulation.clearDeviceMetricsOverride")
            result.screenshot = screenshot
        return result

    def close(self) -> None:
        """Stop the browser (the one this object started) and remove its profile."""
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _resolves(ref: str, page: Path, ids: set[str]) -> bool:
    """An in-page anchor that exists, a data: URI, or a local file that exists."""
    if not ref:
        return False
    if ref.startswith("#"):
        return ref == "#" or urllib.parse.unquote(ref[1:]) in ids
    parsed = urllib.parse.urlparse(ref)
    if parsed.scheme == "data":
        return True
    if parsed.scheme in ("http", "https", "ftp") or ref.startswith("//"):
        return False  # reports must work offline
    if parsed.scheme == "file":
        target = Path(urllib.parse.unquote(parsed.path))
    elif parsed.scheme:
        return False
    else:
        target = (page.parent / urllib.parse.unquote(parsed.path)).resolve()
    if not target.exists():
        return False
    if parsed.fragment and target == page.resolve():
        return parsed.fragment in ids
    return True
