"""start_sandbox and ``python -m sandbox``."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import sys
from pathlib import Path

import aiohttp
import pytest

from sandbox import PagerDutyState, SlackState, start_sandbox

REPO = Path(__file__).resolve().parents[2]


async def test_start_and_stop_all_fakes(unused_tcp_port):
    slack_state = SlackState({"C0INCIDENT": "incidents"})
    sandbox = await start_sandbox(ports={"jira": unused_tcp_port}, states={"slack": slack_state})
    try:
        assert set(sandbox.urls) == {"slack", "pagerduty", "jira", "zendesk", "salesforce"}
        assert sandbox.urls["jira"] == f"http://127.0.0.1:{unused_tcp_port}"
        assert len({url.rsplit(":", 1)[1] for url in sandbox.urls.values()}) == 5
        assert sandbox.states["slack"] is slack_state
        assert isinstance(sandbox.states["pagerduty"], PagerDutyState)
        assert sandbox.ca_file is None and sandbox.client_ssl_context() is None
        async with aiohttp.ClientSession() as session:
            for vendor, url in sandbox.urls.items():
                async with session.get(f"{url}/_sandbox/state") as resp:
                    assert resp.status == 200, vendor
            async with session.get(f"{sandbox.urls['slack']}/_sandbox/state") as resp:
                assert list((await resp.json())["channels"]) == ["C0INCIDENT"]
    finally:
        await sandbox.stop()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"{sandbox.urls['slack']}/_sandbox/state")


async def test_unknown_vendor_is_refused():
    with pytest.raises(ValueError, match="hubspot"):
        await start_sandbox(ports={"hubspot": 0})


async def test_tls_serves_https_trusted_only_through_the_sandbox_ca():
    async with await start_sandbox(tls=True) as sandbox:
        url = sandbox.urls["pagerduty"]
        assert url.startswith("https://127.0.0.1:") and sandbox.ca_file.is_file()
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(f"{url}/_sandbox/state")
            async with session.get(f"{url}/_sandbox/state", ssl=sandbox.client_ssl_context()) as resp:
                assert resp.status == 200
            ctx = ssl.create_default_context(cafile=str(sandbox.ca_file))
            async with session.get(f"https://localhost:{url.rsplit(':', 1)[1]}/_sandbox/calls", ssl=ctx) as resp:
                assert resp.status == 200
        ca_file = sandbox.ca_file
    assert not ca_file.exists()


async def test_python_m_sandbox_prints_urls_and_serves_until_terminated():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbox", "--slack-channel", "C0INCIDENT=incidents", "--no-rate-limits",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip() for _ in range(3)]
        urls = dict(line.split("=", 1) for line in lines)
        assert set(urls) == {"SANDBOX_SLACK_URL", "SANDBOX_PAGERDUTY_URL", "SANDBOX_JIRA_URL"}
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{urls['SANDBOX_SLACK_URL']}/_sandbox/state") as resp:
                assert list((await resp.json())["channels"]) == ["C0INCIDENT"]
            async with session.get(f"{urls['SANDBOX_PAGERDUTY_URL']}/_sandbox/config") as resp:
                assert await resp.json() == {"rate_limits": False}
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
