"""API drift met by a back-off, then by the dependency the backed-off release was written for (marked network)."""

from __future__ import annotations

import pytest

from cloche import Client
from tests_support import run_file

pytestmark = pytest.mark.network


@pytest.mark.timeout(1200)  # bokeh and numpy from PyPI, locked, built and checked three times on a busy host
def test_a_backed_off_release_gets_the_dependency_series_it_was_written_for(client: Client) -> None:
    """bokeh 3 removed ``Panel``; bokeh 2.4 has it but uses ``np.bool8``, which numpy 2 removed: the import of
    bokeh 2.4 then raises AttributeError in numpy, so numpy is backed off too, and the environment is sealed."""
    with client.create() as box:
        result = run_file(
            box,
            "main.py",
            "from bokeh.io import output_file\nfrom bokeh.models.widgets import Panel, Tabs\n",
            timeout_seconds=600,
        )
        install = result.install
        assert install is not None and install.verified is True, install
        backoffs = {s.requirement: s for s in install.recovery if s.action == "version_backoff"}
        assert {"bokeh<3", "numpy<2"} <= set(backoffs)
        assert backoffs["numpy<2"].outcome == "fixed" and "bool8" in backoffs["bokeh<3"].detail
        versions = {p.name.lower(): p.version for p in install.installed}
        assert versions["bokeh"].startswith("2.") and versions["numpy"].startswith("1.")


@pytest.mark.timeout(1200)
def test_a_backoff_reaches_the_series_it_asks_for_even_when_it_has_only_source_archives(client: Client) -> None:
    """moviepy 2 removed ``moviepy.editor``; moviepy<2 is 1.0.3, published only as a source archive: a wheels-only
    lock would settle on 0.2.3.1 from 2017."""
    with client.create() as box:
        result = run_file(
            box, "main.py", "import moviepy.editor\nprint(moviepy.editor.__name__)\n", timeout_seconds=600
        )
        install = result.install
        assert install is not None and install.verified is True
        versions = {p.name.lower(): p.version for p in install.installed}
        assert versions["moviepy"].startswith("1."), versions
