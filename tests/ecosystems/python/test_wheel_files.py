"""Reading a wheel's import names from its zip central directory (the long tail's third check). No network."""

from __future__ import annotations

import io
import zipfile

import pytest

from cloche.ecosystems.python.resolve import wheel_files as wf


def _zip(members: list[str], comment: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in members:
            zf.writestr(name, b"")
        zf.comment = comment
    return buf.getvalue()


def _listing(data: bytes) -> list[str]:
    tail_start = max(0, len(data) - wf.TAIL_BYTES)
    return wf.member_names(data[tail_start:], tail_start, lambda offset, size: data[offset : offset + size])


def test_central_directory_listing() -> None:
    members = ["pkg/__init__.py", "pkg-1.0.dist-info/RECORD"]
    assert _listing(_zip(members)) == members
    # a zip comment that happens to contain the end-of-central-directory signature
    assert _listing(_zip(members, b"PK\x05\x06 decoy " + b"x" * 100)) == members
    # ... or one so close to the end that no real record could follow it
    assert _listing(_zip(members, b"x" * 100 + b"PK\x05\x06 decoy")) == members


def test_truncated_archive_is_an_error() -> None:
    data = _zip([f"pkg/m{i}.py" for i in range(3000)])
    tail_start = len(data) - 100
    with pytest.raises(wf.ZipListingError):
        wf.member_names(data[tail_start:], tail_start, lambda offset, size: b"")
    with pytest.raises(wf.ZipListingError):
        wf.member_names(b"not a zip at all", 0, lambda offset, size: b"")


@pytest.mark.slow
def test_zip64_central_directory_listing() -> None:
    members = [f"big/f{i}.txt" for i in range(70_000)]  # > 65535 entries forces Zip64 records
    data = _zip(members)
    assert wf.find_central_directory(data[-wf.TAIL_BYTES :], len(data) - wf.TAIL_BYTES).zip64_eocd_offset
    assert _listing(data) == members


def test_import_names_from_wheel_paths() -> None:
    paths = [
        "requests/__init__.py",
        "requests/api.py",
        "six.py",
        "_yaml.cpython-311-x86_64-linux-gnu.so",
        "libbundled.so",
        "numpy.libs/libopenblas.so",
        "google/cloud/storage/__init__.py",
        "google/cloud/storage/blob.py",
        "google/_upb/_message.abi3.so",
        "tests/__init__.py",
        "utils/__init__.py",
        "__init__.py",
        "proj-1.0.data/purelib/purepkg/__init__.py",
        "proj-1.0.data/scripts/tool.py",
        "proj-1.0.dist-info/METADATA",
        "proj-stubs/__init__.pyi",
        "../../bin/tool",
    ]
    assert wf.import_names(paths) == {
        "requests",
        "six",
        "_yaml",
        "google.cloud.storage",
        "google._upb._message",
        "purepkg",
    }


def test_provides_by_dotted_prefix() -> None:
    names = {"google.cloud.storage", "ruamel.yaml", "six"}
    assert wf.provides(names, "google.cloud.storage.blob")
    assert wf.provides(names, "ruamel")  # 'from ruamel import yaml'
    assert wf.provides(names, "six")
    assert not wf.provides(names, "google.cloud.bigquery")
    assert not wf.provides(names, "sixty")


def test_pick_wheel_prefers_pure_then_linux() -> None:
    def f(name: str) -> dict[str, object]:
        return {"filename": name, "packagetype": "bdist_wheel", "url": name, "yanked": False}

    win = f("p-1-cp311-cp311-win_amd64.whl")
    linux = f("p-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    pure = f("p-1-py3-none-any.whl")
    assert wf.pick_wheel([win, linux, pure]) is pure
    assert wf.pick_wheel([win, linux]) is linux
    assert wf.pick_wheel([win]) is win
    assert wf.pick_wheel([{"filename": "p-1.tar.gz", "packagetype": "sdist"}]) is None
