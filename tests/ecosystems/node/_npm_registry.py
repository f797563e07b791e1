"""A local npm registry fixture: packuments and real tarballs in the registry's URL layout.

``<root>/<name>.json`` is ``GET /<name>`` (the full packument, with publish times) and
``<root>/<name>/-/<file>.tgz`` the tarball it points at. The same folder is served two ways in tests:
over real HTTP on 127.0.0.1 by ``serve`` (what the host-side vetting reads with httpx), and as a
``file://`` registry, which cloche serves to npm inside the install jail.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import io
import json
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

DAY = 86_400.0
ORIGIN = "http://registry.invalid"  # rewritten to the serving origin by both servers


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(epoch))


def _tarball(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"package/{name}")
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def publish(
    root: Path,
    name: str,
    version: str,
    *,
    age_days: float,
    files: dict[str, str] | None = None,
    manifest: dict[str, Any] | None = None,
    latest: bool = True,
) -> None:
    """Add ``name@version``, published ``age_days`` ago, with ``files`` besides its package.json
    (default: an ``index.js`` exporting its name and version)."""
    package_json = {"name": name, "version": version, "license": "MIT", **(manifest or {})}
    body = (
        files if files is not None else {"index.js": f"module.exports = {{ name: {name!r}, version: {version!r} }};\n"}
    )
    data = _tarball({"package.json": json.dumps(package_json), **body})
    bare = name.rsplit("/", 1)[-1]
    rel = f"{name}/-/{bare}-{version}.tgz"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(data)
    document_path = root / f"{name}.json"
    document: dict[str, Any] = (
        json.loads(document_path.read_text())
        if document_path.exists()
        else {"name": name, "dist-tags": {}, "versions": {}, "time": {}}
    )
    dist = {
        "tarball": f"{ORIGIN}/{rel}",
        "shasum": hashlib.sha1(data).hexdigest(),
        "integrity": "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode(),
    }
    document["versions"][version] = {**package_json, "dist": dist}
    when = _iso(time.time() - age_days * DAY)
    document["time"][version] = when
    document["time"].setdefault("created", when)
    document["time"]["created"] = min(document["time"]["created"], when)
    if latest:
        document["dist-tags"]["latest"] = version
    document_path.write_text(json.dumps(document))


class _Handler(http.server.BaseHTTPRequestHandler):
    root: Path

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path).lstrip("/")
        target = self.root / (path if "/-/" in path else f"{path}.json")
        if ".." in path or not target.is_file():
            self.send_response(404)
            self.end_headers()
            return
        data = target.read_bytes()
        if target.suffix == ".json":
            origin = f"http://{self.headers['Host']}"
            data = data.replace(ORIGIN.encode(), origin.encode())
        self.send_response(200)
        self.send_header("Content-Type", "application/json" if target.suffix == ".json" else "application/gzip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(root: Path) -> Iterator[str]:
    """The folder as an HTTP registry on 127.0.0.1; yields its URL."""
    handler = type("Handler", (_Handler,), {"root": root})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def standard_registry(root: Path) -> Path:
    """The packages the tests use:

    - ``old-helper``: established (first published 400 days ago, 3 releases).
    - ``fresh-helper``: first published a week ago (two releases): refused.
    - ``one-shot``: a single release 200 days ago: too little history.
    - ``subpath-lib``: 2.0.0 (newest) exports only "."; 1.5.0 also exports "./extra".
    - ``esm-lib``: 3.0.0 (newest) is an ES module only; 2.1.0 ships CommonJS.
    - ``moved-file-lib``: no exports map; 2.0.0 (newest) dropped ``legacy.js``, which 1.0.0 ships (the facts
      cannot tell: only loading it in the install jail does).
    - ``named-lib``: ES modules; 2.0.0 (newest) dropped the export ``oldName`` that 1.0.0 has.
    - ``native-addon``: a C addon built by node-gyp at install time (no prebuilt binary to download).
    - ``downloads-binary``: its install script fetches a binary from a host that is not a registry, through
      the install jail's proxy, the way binary and browser downloaders do.
    - ``fetches-directly``: its install script fetches a file itself, ignoring the proxy variables (as some
      downloaders do), so the jail's missing name resolution is what stops it.
    - ``browser-kit``: an install script that downloads a browser unless PUPPETEER_SKIP_DOWNLOAD is set (as
      puppeteer's does); what it saw is in the installed package (``require('browser-kit').skipped``).
    """
    root.mkdir(parents=True, exist_ok=True)
    for version, age in (("1.0.0", 400), ("1.1.0", 300), ("1.2.0", 200)):
        publish(root, "old-helper", version, age_days=age)
    for version, age in (("0.1.0", 7), ("0.2.0", 6)):
        publish(root, "fresh-helper", version, age_days=age)
    publish(root, "one-shot", "1.0.0", age_days=200)
    extra = {"index.js": "module.exports = 'main';\n", "extra.js": "module.exports = 'extra 1.5.0';\n"}
    exports_both = {"exports": {".": "./index.js", "./extra": "./extra.js"}}
    publish(root, "subpath-lib", "1.0.0", age_days=500, files=extra, manifest=exports_both)
    publish(root, "subpath-lib", "1.5.0", age_days=400, files=extra, manifest=exports_both)
    only_main = {"index.js": "module.exports = 'main 2.0.0';\n"}
    publish(root, "subpath-lib", "2.0.0", age_days=100, files=only_main, manifest={"exports": {".": "./index.js"}})
    cjs = {"index.js": "module.exports = function greet() { return 'esm-lib 2.1.0 (commonjs)'; };\n"}
    publish(root, "esm-lib", "2.0.0", age_days=600, files=cjs)
    publish(root, "esm-lib", "2.1.0", age_days=500, files=cjs)
    esm = {"index.js": "export default function greet() { return 'esm-lib 3.0.0 (esm)'; }\n"}
    publish(root, "esm-lib", "3.0.0", age_days=120, files=esm, manifest={"type": "module", "exports": "./index.js"})
    legacy = {"index.js": "module.exports = 'main';\n", "legacy.js": "module.exports = 'legacy 1.0.0';\n"}
    publish(root, "moved-file-lib", "1.0.0", age_days=700, files=legacy)
    publish(root, "moved-file-lib", "2.0.0", age_days=300, files={"index.js": "module.exports = 'main 2';\n"})
    esm_module = {"type": "module", "exports": "./index.js"}
    old_api = {"index.js": "export const oldName = 'oldName from 1.0.0';\nexport const kept = 1;\n"}
    publish(root, "named-lib", "1.0.0", age_days=700, files=old_api, manifest=esm_module)
    new_api = {"index.js": "export const newName = 'newName from 2.0.0';\nexport const kept = 2;\n"}
    publish(root, "named-lib", "2.0.0", age_days=300, files=new_api, manifest=esm_module)
    addon = {
        "binding.gyp": '{"targets": [{"target_name": "addon", "sources": ["addon.c"]}]}',
        "addon.c": ADDON_C,
        "index.js": "module.exports = require('./build/Release/addon.node');\n",
    }
    for version, age in (("1.0.0", 300), ("1.1.0", 200)):
        native = {"scripts": {"install": "node-gyp rebuild"}, "gypfile": True}
        publish(root, "native-addon", version, age_days=age, files=addon, manifest=native)
    downloader = {"index.js": "module.exports = 'binary wrapper';\n", "install.js": DOWNLOADER}
    scripts = {"scripts": {"install": "node install.js"}, "hasInstallScript": True}
    for version, age in (("1.0.0", 300), ("1.1.0", 200)):
        publish(root, "downloads-binary", version, age_days=age, files=downloader, manifest=scripts)
    direct = {"index.js": "module.exports = 'direct';\n", "install.js": DIRECT_DOWNLOADER}
    for version, age in (("1.0.0", 300), ("1.1.0", 200)):
        publish(root, "fetches-directly", version, age_days=age, files=direct, manifest=scripts)
    browser = {"index.js": BROWSER_KIT, "install.js": BROWSER_KIT_INSTALL.replace("/* download */", DOWNLOADER)}
    for version, age in (("1.0.0", 300), ("1.1.0", 200)):
        publish(root, "browser-kit", version, age_days=age, files=browser, manifest=scripts)
    return root


ADDON_C = """
#include <node_api.h>

static napi_value answer(napi_env env, napi_callback_info info) {
  napi_value result;
  napi_create_int32(env, 42, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "answer", NAPI_AUTO_LENGTH, answer, NULL, &fn);
  napi_set_named_property(env, exports, "answer", fn);
  return exports;
}
"""

# CONNECT through https_proxy to a host no install jail may reach, then fail the way downloaders do.
DOWNLOADER = """
const http = require('http');
const proxy = new URL(process.env.https_proxy);
const url = 'https://binaries.example.com/tool-1.0.0-linux-x64.tar.gz';
const target = 'binaries.example.com:443';
const req = http.request({ host: proxy.hostname, port: proxy.port, method: 'CONNECT', path: target });
req.on('connect', (res) => {
  console.error(`Error: could not download ${url} (proxy said ${res.statusCode}); set TOOL_SKIP_DOWNLOAD=1 to skip`);
  process.exit(1);
});
req.on('error', (e) => { console.error(`Error: could not download ${url}: ${e.message}`); process.exit(1); });
req.end();
"""

# A direct HTTPS request, no proxy: fails in the jail at the name lookup ("getaddrinfo EAI_AGAIN <host>").
DIRECT_DOWNLOADER = """
require('https').get('https://downloads.example.org/tool-1.0.0.tar.gz', () => process.exit(0))
  .on('error', (e) => { console.error(`RequestError: ${e.message}`); process.exit(1); });
"""

# What puppeteer's install script does: skip when told to (recording that it did), else download the browser.
BROWSER_KIT_INSTALL = """
const skip = process.env.PUPPETEER_SKIP_DOWNLOAD;
if (skip) {
  require('fs').writeFileSync(__dirname + '/skipped.txt', 'PUPPETEER_SKIP_DOWNLOAD=' + skip);
  console.log('browser download skipped');
} else {
/* download */
}
"""
BROWSER_KIT = """
const fs = require('fs');
exports.skipped = fs.readFileSync(__dirname + '/skipped.txt', 'utf8');
exports.executablePath = process.env.PUPPETEER_EXECUTABLE_PATH || null;
"""
