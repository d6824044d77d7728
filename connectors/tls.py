"""One TLS context per requests session that trusts a private CA (``ca_file``).

requests hands a ``verify`` path to urllib3 as ``ca_certs``, and urllib3 then builds a new SSL
context and loads the CA file into it for every connection it opens: about 0.7 MB and a file parse
per connection, for as long as the pool keeps it. The Zendesk and Salesforce clients (requests,
under zenpy and simple-salesforce) trust a private CA whenever ``tls_ca_file`` or the vendor's
``ca_file`` is set (a corporate proxy's CA, or the sandbox's). :class:`TrustingAdapter` builds that
context once and gives it to every connection of the session; verification stays on (the context
requires a certificate and checks the host name). Without ``ca_file`` nothing changes: requests
shares its own default context.
"""

from __future__ import annotations

import ssl
from typing import Any

from requests.adapters import HTTPAdapter


class TrustingAdapter(HTTPAdapter):
    """An HTTP adapter whose HTTPS connections share one SSL context trusting ``ca_file``."""

    def __init__(self, ca_file: str | None = None, **kwargs: Any) -> None:
        self.ssl_context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        super().__init__(**kwargs)

    def build_connection_pool_key_attributes(self, request: Any, verify: Any, cert: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if self.ssl_context is not None and verify is not False and host_params.get("scheme") == "https":
            pool_kwargs.pop("ca_certs", None)
            pool_kwargs.pop("ca_cert_dir", None)
            pool_kwargs["ssl_context"] = self.ssl_context
            pool_kwargs["cert_reqs"] = "CERT_REQUIRED"
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)  # checks the path; sets what urllib3 would load
        if self.ssl_context is not None and verify is not False and url.lower().startswith("https"):
            conn.ca_certs = conn.ca_cert_dir = None  # already in the shared context: not loaded again per connection
