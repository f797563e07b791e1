"""Real-world installs from the real PyPI through the install jail's egress proxy (marked network)."""

from __future__ import annotations

import pytest

from cloche import Client
from tests_support import run_file

pytestmark = pytest.mark.network


def test_scan_installs_real_packages_once(client: Client) -> None:
    code = (
        "import yaml, bs4, dateutil, requests, cv2, sklearn\n"
        "print(yaml.safe_load('a: 1')['a'], bs4.BeautifulSoup('<b>x</b>', 'html.parser').b.text, cv2.__name__)\n"
    )
    with client.create() as box:
        first = run_file(box, "main.py", code, timeout_seconds=600)
        assert first.stdout == "1 x cv2\n"
        assert first.install is not None and first.install.source == "scan"
        installed = {p.name for p in first.install.installed}
        assert {"pyyaml", "beautifulsoup4", "python-dateutil", "requests", "opencv-python-headless"} <= installed
        assert "scikit-learn" in installed
        assert first.output.startswith("Installing ")
        second = box.exec(filename="main.py")
        assert second.stdout == first.stdout
        assert second.install is not None
        assert second.install.installed == [] and second.install.reused_environment
        assert second.install.duration_ms < 1000  # no resolver, no network: a fingerprint check and a lookup


def test_api_drift_backs_off_to_the_release_with_the_name(client: Client) -> None:
    """Werkzeug 3 removed ``werkzeug.urls.url_quote`` (what broke Flask 2.2): the newest release fails the check,
    and the newest release of the previous series, which has it, is installed and sealed."""
    with client.create() as box:
        result = run_file(
            box, "main.py", "from werkzeug.urls import url_quote\nprint(url_quote('a b'))\n", timeout_seconds=600
        )
        assert result.stdout == "a%20b\n"
        install = result.install
        assert install is not None and install.verified is True
        [step] = install.recovery
        assert (step.action, step.module, step.outcome) == ("version_backoff", "werkzeug.urls", "fixed")
        assert step.requirement == "werkzeug<3"
        [werkzeug] = [p for p in install.installed if p.name.lower() == "werkzeug"]
        assert werkzeug.version.startswith("2.")
