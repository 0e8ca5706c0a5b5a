"""Both HTML reports in headless Chromium: offline, every image drawn, one screenshot each.

Each report is loaded from ``file://`` with every request routed to a local recording proxy, so that any
attempt to reach the network (a CDN stylesheet, a web font, a remote image) is seen. A copy of the page
with a small probe script appended writes, at the load event, the size of every ``<img>``/``<svg>`` and
the resources the page fetched into ``document.title``, read back with ``--dump-dom``. Screenshots go to
``tests/artifacts/`` (kept by CI as artefacts).
"""

import json
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from helpers import IN_CI
from test_reportlets import make_group_report, make_participant_report

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
ARTIFACTS = Path(__file__).parent / "artifacts"

if CHROMIUM is None:
    if IN_CI:
        raise RuntimeError("CI=true but chromium is not installed (apt-get install chromium)")
    pytest.skip(
        "headless Chromium (/usr/bin/chromium, Debian package 'chromium') is not installed",
        allow_module_level=True,
    )

#: Chromium's own service hosts (component updater, sign-in, network time): contacted by the browser
#: itself even with --disable-background-networking in this Debian build, whatever page is loaded. They
#: never serve stylesheets, scripts, fonts or images to a page; any other host is a page request.
BROWSER_SERVICE_HOSTS = {
    "update.googleapis.com",
    "accounts.google.com",
    "clients2.google.com",
    "clientservices.googleapis.com",
    "redirector.gvt1.com",
    "edgedl.me.gvt1.com",
    "optimizationguide-pa.googleapis.com",
    "safebrowsingohttpgateway.googleapis.com",
}

PROBE = """<script>
window.addEventListener('load', function () {
  var els = Array.prototype.slice.call(document.querySelectorAll('img, svg'));
  var sizes = els.map(function (e) {
    var r = e.getBoundingClientRect();
    var decoded = e.tagName.toLowerCase() !== 'img' || (e.complete && e.naturalWidth > 0);
    return {tag: e.tagName.toLowerCase(), name: e.getAttribute('alt') || '', w: r.width, h: r.height,
            decoded: decoded};
  });
  var res = performance.getEntriesByType('resource').map(function (r) { return r.name; });
  document.title = 'PROBE' + JSON.stringify({elements: sizes, resources: res});
});
</script>
"""


class RecordingProxy:
    """A TCP listener used as Chromium's proxy: records the first line of every request, answers 502."""

    def __init__(self):
        self.requests = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(1)
                try:
                    data = conn.recv(4096)
                    self.requests.append(data.split(b"\r\n", 1)[0].decode("latin-1"))
                    conn.sendall(
                        b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                except OSError:
                    self.requests.append("<connection without request>")

    def page_requests(self) -> list[str]:
        """Recorded requests other than Chromium's own service traffic."""
        return [r for r in self.requests if _host(r) not in BROWSER_SERVICE_HOSTS]

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def _host(request_line: str) -> str:
    """Host of a proxied request line: ``CONNECT host:443 ...`` or ``GET http://host/path ...``."""
    parts = request_line.split()
    target = parts[1] if len(parts) > 1 else ""
    return urlsplit(target if "://" in target else "//" + target).hostname or ""


def chromium(args, profile: Path, proxy: RecordingProxy, timeout=45) -> str:
    """Run headless Chromium with a fresh profile, all traffic through ``proxy``; return stdout."""
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={profile}",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-features=NetworkTimeServiceQuerying",
        "--no-pings",
        "--disable-domain-reliability",
        "--no-first-run",
        "--disable-default-apps",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--proxy-server=http://127.0.0.1:{proxy.port}",
        "--proxy-bypass-list=<-loopback>",
        *args,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def probe(html: Path, tmp_path: Path, proxy: RecordingProxy, screenshot: Path | None = None) -> dict:
    """Load a copy of ``html`` with the probe script and return what it measured.

    With ``screenshot``, the same load also saves a 1280x2400 PNG of the page (the probe changes only
    the title).
    """
    page = html.with_name(f".probe-{html.name}")
    page.write_text(html.read_text().replace("</body>", PROBE + "</body>"))
    shot = ["--window-size=1280,2400", f"--screenshot={screenshot}"] if screenshot else []
    try:
        dom = chromium(
            ["--virtual-time-budget=10000", *shot, "--dump-dom", page.as_uri()],
            tmp_path / f"profile-{html.stem}",
            proxy,
        )
    finally:
        page.unlink()
    found = re.search(r"<title>PROBE(.*?)</title>", dom, re.S)
    assert found, f"the probe did not run in {html.name}: {dom[:500]}"
    import html as htmllib

    return json.loads(htmllib.unescape(found.group(1)))


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    rng = np.random.default_rng(7)
    return {
        "participant": Path(make_participant_report(root, rng)),
        "group": Path(make_group_report(root, rng)),
    }


@pytest.fixture
def proxy():
    server = RecordingProxy()
    yield server
    server.close()


def test_probe_detects_network_requests_and_empty_images(tmp_path, proxy):
    """Negative control: a page with a remote image and an empty one is caught by both checks."""
    page = tmp_path / "leaky.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>x</title></head><body>"
        '<img alt="remote" src="http://cdn.example.org/x.png">'
        '<img alt="empty" src=""></body></html>'
    )
    result = probe(page, tmp_path, proxy)
    assert any("cdn.example.org" in r for r in proxy.page_requests())
    assert any("cdn.example.org" in r for r in result["resources"])
    assert any(not e["decoded"] or e["w"] == 0 for e in result["elements"])


@pytest.mark.parametrize("kind", ["participant", "group"])
def test_report_loads_offline_with_every_image_drawn(reports, kind, tmp_path, proxy):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"report-{kind}.png"
    shot.unlink(missing_ok=True)
    result = probe(reports[kind], tmp_path, proxy, screenshot=shot)
    assert proxy.page_requests() == [], f"{kind} report tried to reach the network: {proxy.requests}"
    remote = [r for r in result["resources"] if not r.startswith(("file:", "data:"))]
    assert remote == []
    images = [e for e in result["elements"] if e["tag"] == "img"]
    assert len(images) == {"participant": 6, "group": 9}[kind]
    empty = [e for e in result["elements"] if not (e["w"] > 0 and e["h"] > 0 and e["decoded"])]
    assert empty == [], f"elements without size in the {kind} report: {empty}"
    assert shot.is_file()
    assert shot.stat().st_size > 20000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_group_confusion_matrices_are_legible(reports, tmp_path, proxy):
    """The confusion matrices (one panel per model) are drawn at least 250 px tall at 1280 px wide,
    not as a strip in a column of the figure grid."""
    result = probe(reports["group"], tmp_path, proxy)
    confusion = [e for e in result["elements"] if e["name"] == "Confusion matrices"]
    assert len(confusion) == 1
    assert confusion[0]["h"] >= 250, confusion[0]
