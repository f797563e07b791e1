"""Packages whose install scripts download a browser (or a driver or app binary) from outside the registries.

Install jails reach only the package registries, so such a download fails and with it the whole install, although
the library itself (what ``require()`` loads) needs nothing downloaded. Each of these packages documents a variable
that skips the download; install jails set them all, so ``require('puppeteer')`` works and launching a browser is
the program's business (it then needs one: ``SYSTEM_CHROMIUM`` below). Sources, one per package:

- puppeteer: https://pptr.dev/api/puppeteer.configuration (``PUPPETEER_SKIP_DOWNLOAD``; before v19
  ``PUPPETEER_SKIP_CHROMIUM_DOWNLOAD``; ``PUPPETEER_EXECUTABLE_PATH`` names the browser to launch)
- playwright: https://playwright.dev/docs/browsers#skip-browser-downloads (``PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD``)
- cypress: https://docs.cypress.io/app/references/advanced-installation (``CYPRESS_INSTALL_BINARY=0``)
- chromedriver (npm package): its README (``CHROMEDRIVER_SKIP_DOWNLOAD``)
- geckodriver (npm package): its README (``GECKODRIVER_SKIP_DOWNLOAD``)

Only packages that load without what they skip belong here. ``electron`` does not: ``require('electron')``
throws when its binary is missing ("Electron failed to install correctly"), so its install is left to fail with
the clearer report. Any other install script that fetches from outside the registries fails likewise, reported as
such (install_errors.py).
"""

from __future__ import annotations

from pathlib import Path

SKIP_BROWSER_DOWNLOADS: dict[str, str] = {
    "PUPPETEER_SKIP_DOWNLOAD": "true",
    "PUPPETEER_SKIP_CHROMIUM_DOWNLOAD": "true",
    "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1",
    "CYPRESS_INSTALL_BINARY": "0",
    "CHROMEDRIVER_SKIP_DOWNLOAD": "true",
    "GECKODRIVER_SKIP_DOWNLOAD": "true",
}

# Debian's chromium package, installed on the host by an operator (`apt-get install chromium`), is visible read-only
# in every jail (/usr is bound). When it is there, puppeteer launches it by default, as a user would expect.
SYSTEM_CHROMIUM = Path("/usr/bin/chromium")


def browser_env(node_modules: Path, chromium: Path = SYSTEM_CHROMIUM) -> dict[str, str]:
    """Variables for runs of an environment whose top-level packages are in ``node_modules``: the host's chromium
    for puppeteer when there is one (a program's own ``executablePath`` still wins; puppeteer-core reads no
    variables); nothing otherwise."""
    if (node_modules / "puppeteer").is_dir() and chromium.is_file():
        return {"PUPPETEER_EXECUTABLE_PATH": chromium.as_posix()}
    return {}
