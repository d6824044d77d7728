"""Start every fake on its own port in the running event loop: what the demo and the tests use.

    sandbox = await start_sandbox()            # free ports on 127.0.0.1
    sandbox.urls["slack"]                      # "http://127.0.0.1:40123"
    await sandbox.stop()

With ``tls=True`` the fakes serve HTTPS with a certificate made at start-up for the host (and
localhost/127.0.0.1); clients trust it through :meth:`Sandbox.client_ssl_context` or the PEM at
:attr:`Sandbox.ca_file`. The ``pagerduty`` client needs this: it refuses non-https base URLs.
Making the certificate needs the ``cryptography`` package.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from . import jira, pagerduty, salesforce, slack, zendesk
from .common import SandboxState

VENDORS: dict[str, tuple[Callable[..., web.Application], Callable[[], SandboxState]]] = {
    "slack": (slack.create_app, slack.SlackState),
    "pagerduty": (pagerduty.create_app, pagerduty.PagerDutyState),
    "jira": (jira.create_app, jira.JiraState),
    "zendesk": (zendesk.create_app, zendesk.ZendeskState),
    "salesforce": (salesforce.create_app, salesforce.SalesforceState),
}


@dataclass
class Sandbox:
    """The running fakes: ``urls`` and ``states`` by vendor name (``slack``, ``pagerduty``, ``jira``)."""

    urls: dict[str, str]
    states: dict[str, SandboxState]
    ca_file: Path | None = None
    _runners: list[web.AppRunner] = field(default_factory=list, repr=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    def client_ssl_context(self) -> ssl.SSLContext | None:
        """An SSL context trusting the sandbox certificate (``None`` when serving plain HTTP)."""
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None

    async def stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def start_sandbox(
    host: str = "127.0.0.1",
    ports: Mapping[str, int] | None = None,
    *,
    states: Mapping[str, SandboxState] | None = None,
    tls: bool = False,
    access_log: bool = False,
) -> Sandbox:
    """Start the Slack, PagerDuty and Jira fakes. ``ports`` maps vendor to port (missing or 0: a free
    port); ``states`` supplies configured states (e.g. ``SlackState(channels=…)``), others get defaults."""
    ports = dict(ports or {})
    unknown = (set(ports) | set(states or {})) - set(VENDORS)
    if unknown:
        raise ValueError(f"unknown sandbox vendors: {sorted(unknown)}")
    sandbox = Sandbox(urls={}, states={})
    server_ssl = None
    if tls:
        sandbox._tmp = tempfile.TemporaryDirectory(prefix="switchboard-sandbox-")
        server_ssl, sandbox.ca_file = _tls_material(Path(sandbox._tmp.name), host)
    url_host = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    try:
        for vendor, (create_app, default_state) in VENDORS.items():
            state = (states or {}).get(vendor) or default_state()
            runner = web.AppRunner(create_app(state), **({} if access_log else {"access_log": None}))
            await runner.setup()
            sandbox._runners.append(runner)
            sock = _bind(host, ports.get(vendor) or 0)
            await web.SockSite(runner, sock, ssl_context=server_ssl).start()
            port = sock.getsockname()[1]
            sandbox.urls[vendor] = f"{'https' if tls else 'http'}://{url_host}:{port}"
            sandbox.states[vendor] = state
    except BaseException:
        await sandbox.stop()
        raise
    return sandbox


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


def _tls_material(folder: Path, host: str) -> tuple[ssl.SSLContext, Path]:
    """A throwaway CA and a server certificate it signs, valid for a day. Returns the server
    context and the CA's PEM file."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("start_sandbox(tls=True) needs the 'cryptography' package") from exc

    now = datetime.datetime.now(datetime.timezone.utc)
    valid = {
        "not_valid_before": now - datetime.timedelta(minutes=5),
        "not_valid_after": now + datetime.timedelta(days=1),
    }

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder(subject_name=name("Switchboard sandbox CA"), issuer_name=name("Switchboard sandbox CA"),
                                public_key=ca_key.public_key(), serial_number=x509.random_serial_number(), **valid)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    try:
        if host not in ("", "0.0.0.0", "127.0.0.1"):
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder(subject_name=name("switchboard-sandbox"), issuer_name=ca_cert.subject,
                                public_key=key.public_key(), serial_number=x509.random_serial_number(), **valid)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server-key.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + ca_file.read_bytes())
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, ca_file


__all__ = ["Sandbox", "VENDORS", "start_sandbox"]
