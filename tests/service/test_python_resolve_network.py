"""A manifest-less script importing projects whose import names differ from their project names, a namespace
package and a long-tail project runs first time against the real PyPI (marked network)."""

from __future__ import annotations

import pytest

from cloche import Client
from tests_support import run_file

pytestmark = pytest.mark.network

CODE = """\
import duckdb, orjson, attr, jwt, zmq, Levenshtein, jose, OpenSSL, slugify, websocket, serial, nacl, Bio, sentry_sdk
import fitz, magic, git
from azure.storage.blob import BlobServiceClient
from ruamel.yaml import YAML
import pywebcopy
print(duckdb.sql("select 41 + 1").fetchall()[0][0], orjson.dumps({"a": 1}).decode(), slugify.slugify("Hello World"))
print(Levenshtein.distance("kitten", "sitting"), BlobServiceClient.__name__, YAML.__name__)
print(fitz.Document.__name__, magic.from_buffer(b"%PDF-1.4", mime=True), git.Repo.__name__)
"""


def test_manifest_less_script_with_tricky_imports_runs_first_time(client: Client) -> None:
    with client.create() as box:
        result = run_file(box, "main.py", CODE, timeout_seconds=900)
        assert result.stdout == '42 {"a":1} hello-world\n3 BlobServiceClient YAML\nDocument application/pdf Repo\n'
        assert result.unresolved_imports == []
        install = result.install
        assert install is not None and install.source == "scan"
        by_module = {r.module: r for r in install.resolved}
        assert by_module["azure.storage.blob"].package == "azure-storage-blob"
        assert by_module["azure.storage.blob"].source == "namespace"
        assert by_module["pywebcopy"].source == "long tail"
        installed = {p.name for p in install.installed}
        assert {"pyjwt", "pyzmq", "python-jose", "pyopenssl", "python-slugify", "websocket-client"} <= installed
        assert {"pyserial", "pynacl", "biopython", "sentry-sdk", "ruamel-yaml", "levenshtein", "attrs"} <= installed
        assert {"pymupdf", "python-magic", "gitpython"} <= installed
