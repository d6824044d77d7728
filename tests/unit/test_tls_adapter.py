"""connectors/tls.py: one SSL context per session trusting a private CA, verification kept on."""

import asyncio

import certifi
import pytest
import requests

from connectors.tls import TrustingAdapter
from sandbox import start_sandbox


def _session(ca_file: str | None) -> tuple[requests.Session, TrustingAdapter]:
    session = requests.Session()
    adapter = TrustingAdapter(ca_file, max_retries=0, pool_maxsize=4)
    session.mount("https://", adapter)
    return session, adapter


async def test_every_connection_shares_the_one_context_and_verifies_with_it():
    async with await start_sandbox(tls=True) as sandbox:
        url = sandbox.urls["zendesk"] + "/api/v2/tickets/1.json"
        session, adapter = _session(str(sandbox.ca_file))
        with session:
            # four at once: four connections in the pool (the clients call from worker threads)
            answers = await asyncio.gather(*(asyncio.to_thread(session.get, url, verify=str(sandbox.ca_file), timeout=10) for _ in range(4)))
            assert {a.status_code for a in answers} == {401}  # TLS done; the fake asks for credentials
            pools = list(adapter.poolmanager.pools._container.values())
            assert pools and all(p.conn_kw.get("ssl_context") is adapter.ssl_context for p in pools)
            assert all(p.ca_certs is None for p in pools)  # the CA file is not loaded again per connection
            assert adapter.ssl_context.verify_mode.name == "CERT_REQUIRED" and adapter.ssl_context.check_hostname

        # a context trusting other CAs refuses the sandbox's certificate: verification is not off
        session, _ = _session(certifi.where())
        with session, pytest.raises(requests.exceptions.SSLError):
            await asyncio.to_thread(session.get, url, verify=certifi.where(), timeout=10)


def test_without_a_ca_file_requests_keeps_its_own_default():
    from requests.adapters import HTTPAdapter

    _, adapter = _session(None)
    assert adapter.ssl_context is None
    request = requests.Request("GET", "https://example.com/").prepare()
    for verify in (True, False, certifi.where()):
        assert adapter.build_connection_pool_key_attributes(request, verify) == HTTPAdapter().build_connection_pool_key_attributes(request, verify)
