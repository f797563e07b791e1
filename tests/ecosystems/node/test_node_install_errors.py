"""Install failures told as what happened: npm's output from a real failed ``npm ci`` of puppeteer in an
install jail (its script tried to download Chrome; the egress proxy refused the host)."""

from __future__ import annotations

from cloche.ecosystems.node.install_errors import outside_world

PUPPETEER = """npm error code 1
npm error path /opt/cloche/env/node/node_modules/puppeteer
npm error command failed
npm error command sh -c node install.mjs
npm error Error: ERROR: Failed to set up chrome v148.0.7778.97! Set "PUPPETEER_SKIP_DOWNLOAD" env variable to skip download.
npm error     at downloadBrowser (file:///opt/cloche/env/node/node_modules/puppeteer/lib/esm/puppeteer/node/install.js:26:15)
npm error     at process.processTicksAndRejections (node:internal/process/task_queues:95:5)
npm error   [cause]: Error: All providers failed for chrome 148.0.7778.97:
npm error     - DefaultProvider: Download failed: server returned code 403. URL: https://storage.googleapis.com/chrome-for-testing-public/148.0.7778.97/linux64/chrome-linux64.zip
npm error }
npm error A complete log of this run can be found in: /tmp/npm-logs/2026-12-03T08_48_40_988Z-debug-0.log
"""  # noqa: E501 (npm's lines as printed)


def test_browser_download_names_package_url_advice_and_alternative() -> None:
    message = outside_world(PUPPETEER, ["storage.googleapis.com:443"], lambda: frozenset({"puppeteer-core"}))
    assert message is not None
    assert message.startswith("puppeteer's install script (node install.mjs) tried to download")
    assert (
        "https://storage.googleapis.com/chrome-for-testing-public/148.0.7778.97/linux64/chrome-linux64.zip" in message
    )
    assert 'Set "PUPPETEER_SKIP_DOWNLOAD" env variable' in message
    assert "Use 'puppeteer-core' instead" in message
    assert "    at " not in message and "npm error" not in message


def test_without_an_alternative_the_advice_is_general() -> None:
    message = outside_world(PUPPETEER, ["storage.googleapis.com:443"], frozenset)
    assert message is not None and "downloads nothing when installed" in message


def test_failures_that_reached_nothing_outside_are_left_to_npm() -> None:
    assert outside_world(PUPPETEER, [], frozenset) is None


def test_warnings_and_progress_are_not_the_scripts_message() -> None:
    output = (
        "npm error code 1\nnpm error path /opt/cloche/env/node/node_modules/some-addon\n"
        "npm error command failed\nnpm error command sh -c prebuild-install || node-gyp rebuild\n"
        "npm error (node:45) [UNDICI-EHPA] Warning: EnvHttpProxyAgent is experimental\n"
        "npm error prebuild-install warn install Request failed\n"
        "npm error gyp info using node-gyp@10.1.0\n"
        "npm error gyp ERR! stack Error: connect to https://github.com/x/some-addon/releases/v1.tar.gz refused\n"
    )
    message = outside_world(output, ["github.com:443"], frozenset)
    assert message is not None
    assert "The script said: gyp ERR! stack Error: connect to" in message
    assert "https://github.com/x/some-addon/releases/v1.tar.gz" in message


# electron's install script (got, which ignores the proxy variables) in an install jail: no name resolves there.
ELECTRON = """npm error code 1
npm error path /opt/cloche/env/node/node_modules/electron
npm error command failed
npm error command sh -c node install.js
npm error RequestError: getaddrinfo EAI_AGAIN github.com
npm error     at ClientRequest.<anonymous> (/opt/cloche/env/node/node_modules/got/dist/source/core/index.js:970:111)
npm error     at GetAddrInfoReqWrap.onlookupall [as oncomplete] (node:dns:122:26)
npm error A complete log of this run can be found in: /tmp/npm-logs/2026-12-03T14_34_56_739Z-debug-0.log
"""


def test_a_script_that_bypasses_the_proxy_is_told_by_the_host_it_could_not_resolve() -> None:
    message = outside_world(ELECTRON, [], frozenset)
    assert message is not None
    assert message.startswith(
        "electron's install script (node install.js) tried to download from outside the package registries: github.com."
    )
    assert "The script said: RequestError: getaddrinfo EAI_AGAIN github.com" in message
    # npm's own failure (no install script ran) is not mistaken for one.
    npm_own = (
        "npm error code EAI_AGAIN\n"
        "npm error request to https://registry.example/x failed, reason: getaddrinfo EAI_AGAIN registry.example\n"
    )
    assert outside_world(npm_own, [], frozenset) is None
