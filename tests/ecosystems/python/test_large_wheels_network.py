"""A wheel with a single file over the run's file-size limit installs (marked network): tensorflow's
libtensorflow_cc.so.2 is 1.02 GiB, and RLIMIT_FSIZE at the run's 1 GiB killed the installer without a word."""

from __future__ import annotations

import pytest

from cloche import Client

pytestmark = pytest.mark.network


@pytest.mark.timeout(1500)  # a 570 MB wheel from PyPI, unpacked and checked on a busy host
def test_keras_gets_tensorflow_its_backend(client: Client) -> None:
    with client.create() as box:
        box.write("main.py", "from keras.models import load_model\nimport tensorflow\nprint(tensorflow.__name__)\n")
        result = box.exec(filename="main.py", timeout_seconds=900)
        assert result.status == "succeeded", result.output
        assert result.stdout.strip().endswith("tensorflow")
        install = result.install
        assert install is not None and install.verified is True and install.error is None
        installed = {p.name.lower() for p in install.installed}
        assert {"keras", "tensorflow"} <= installed
