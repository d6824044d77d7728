"""connectors/salesforce/lean.py: the worker imports simple-salesforce without its SOAP stack, and
the Metadata API still works when asked for (in a fresh interpreter: this one may have it loaded)."""

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_client_loads_without_zeep_and_lxml_until_the_metadata_api_is_used():
    out = _run("""
        import sys
        from connectors.salesforce.client import SalesforceClient
        from simple_salesforce import Salesforce
        print("zeep" in sys.modules, "lxml" in sys.modules)
        api = Salesforce(session_id="x", instance_url="https://example.invalid", version="60.0").mdapi
        import simple_salesforce.metadata as real
        print("zeep" in sys.modules, type(api) is real.SfdcMetadataApi, type(real).__name__, real.Headers is not None)
    """)
    assert out.splitlines() == ["False False", "True True module True"]


def test_any_other_name_of_the_module_loads_it_too():
    out = _run("""
        import sys
        import connectors.salesforce.client
        import simple_salesforce.metadata as stand_in
        print("zeep" in sys.modules, type(stand_in).__name__)
        from simple_salesforce.util import Headers
        print(stand_in.Headers is Headers, "zeep" in sys.modules, type(sys.modules["simple_salesforce.metadata"]).__name__)
    """)
    assert out.splitlines() == ["False _StandIn", "True True module"]
