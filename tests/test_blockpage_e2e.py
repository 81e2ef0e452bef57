"""The blocked image as a person sees it: a real `urlwarden run`, curl asking for an image, and
headless Chromium showing a page whose image is on the list (a screenshot is kept)."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.support.clients import chromium_load, curl
from tests.support.proxyproc import ProxyProcess, free_port

pytestmark = pytest.mark.e2e

URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def proxy(tmp_path):
    (tmp_path / "block.txt").write_text("listed.test/\n")
    config = tmp_path / "urlwarden.yaml"
    config.write_text("operator:\n  name: Example Library\nlists:\n  - name: hotline\n    path: block.txt\n")
    port = free_port()
    argv = [URLWARDEN, "run", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--",
            "--set", f"confdir={tmp_path / 'conf'}"]
    with ProxyProcess(argv, port, workdir=tmp_path) as process:
        process.port = port
        yield process


def test_curl_asking_for_an_image_gets_the_placeholder(proxy):
    result = curl("-H", "Accept: image/*", "-H", "Accept-Language: de", "http://listed.test/photo.jpg", proxy=proxy.port)
    assert result.status == 451
    assert result.header("Content-Type") == "image/svg+xml"
    texts = [e.text for e in ET.fromstring(result.body).iter(f"{SVG}text")]
    assert texts == ["Bild gesperrt", "Example Library"]
    script = curl("-H", "Accept: */*", "-H", "Sec-Fetch-Dest: script", "http://listed.test/x.js", proxy=proxy.port)
    assert script.body == b"/* blocked by Example Library */\n"


def test_chromium_shows_the_placeholder_in_a_page(proxy, tmp_path):
    page = tmp_path / "gallery.html"
    page.write_text(
        "<!doctype html><meta charset=utf-8><title>Gallery</title><body style='margin:16px;font-family:sans-serif'>"
        "<h1>Gallery</h1><p>The thumbnail below is on the list:</p>"
        "<img id=thumb alt='' src='http://listed.test/photo.jpg'>"
        "<img id=sized alt='' width=80 height=60 src='http://listed.test/small.jpg'></body>")
    result = chromium_load(page.as_uri(), proxy.port, tmp_path / "shot", window_size=(480, 320))
    assert result.load_error is None, result.stderr[-2000:]
    assert "Gallery" in result.text
    # The screenshot stays in pytest's temporary folder (shot/page.png) for a person to look at:
    # two grey boxes with a red "no entry" sign, "Image blocked" and the operator's name.
    png = result.screenshot_path.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000
