"""The Python SDK against a real server."""

from __future__ import annotations

import pytest

from cloche import Client, ClocheAPIError


def test_round_trip(client: Client) -> None:
    with client.create(language="python") as box:
        box.write("pkg/util.py", "def double(x):\n    return 2 * x\n")
        box.write("main.py", "from pkg.util import double\nprint(double(21))\n")
        assert [f.path for f in box.files("pkg").files] == ["pkg/util.py"]
        result = box.exec(filename="main.py")
        assert result.status == "succeeded"
        assert result.stdout == "42\n"
        assert box.read("main.py").startswith(b"from pkg")
        assert box.runs().runs[0].run_id == result.run_id
        assert box.run(result.run_id).argv == ["python3", "main.py"]
        box.remove("main.py")
        assert [f.path for f in box.files().files if f.path.endswith(".py")] == ["pkg/util.py"]
    with pytest.raises(ClocheAPIError) as caught:
        box.refresh()
    assert caught.value.code == "sandbox_not_found"


def test_stream_events(client: Client) -> None:
    with client.create() as box:
        events = list(box.stream(command="echo a; echo b >&2"))
        assert [e.kind for e in events] == ["stdout", "stderr", "done"]
        final = events[-1].result
        assert final is not None and final.exit_code == 0


def test_errors_carry_codes(client: Client) -> None:
    with client.create() as box:
        with pytest.raises(ClocheAPIError) as caught:
            box.exec(filename="nothing.py")
        assert caught.value.status == 404
        assert caught.value.code == "file_not_found"
        with pytest.raises(ClocheAPIError) as caught:
            list(box.stream(filename="../x.py"))
        assert caught.value.code == "invalid_path"


def test_upload_files_and_archive(client: Client, tmp_path: object) -> None:
    import io
    import zipfile
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    (tmp_path / "a.py").write_text("print('a')\n")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("z/b.py", "print('b')\n")
    with client.create() as box:
        assert box.upload(tmp_path / "a.py").filename == "a.py"
        assert [f.path for f in box.upload_archive(buffer.getvalue()).files] == ["z/b.py"]
        assert box.exec(filename="z/b.py").stdout == "b\n"


def test_secrets(client: Client) -> None:
    info = client.set_secret("SDK_TOKEN", "sdk-token-value-123", hosts=("api.example.com",))
    assert (info.name, info.hosts) == ("SDK_TOKEN", ["api.example.com"])
    assert "SDK_TOKEN" in [s.name for s in client.secrets()]
    with client.create(language="python", secrets=["SDK_TOKEN"]) as box:
        result = box.exec(command="echo $SDK_TOKEN")
        assert result.stdout == "***\n"
    client.delete_secret("SDK_TOKEN")
    assert "SDK_TOKEN" not in [s.name for s in client.secrets()]
    with pytest.raises(ClocheAPIError) as missing:
        client.delete_secret("SDK_TOKEN", missing_ok=False)
    assert missing.value.code == "secret_not_found"
