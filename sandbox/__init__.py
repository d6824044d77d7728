"""Local fakes of the SaaS services Switchboard talks to, speaking each vendor's HTTP contract.

One module per vendor (``slack``, ``pagerduty``, ``jira``), each with ``create_app(state)`` and a
state class holding everything it received; ``common`` holds the call log, fault injection and the
``/_sandbox/*`` control endpoints; ``server.start_sandbox`` runs them all; ``python -m sandbox`` runs
them in the foreground for the demo.
"""

from .common import FaultRule, RecordedCall, SandboxState
from .jira import JiraState, JiraWebhookSender
from .pagerduty import PagerDutyState
from .server import Sandbox, start_sandbox
from .slack import SlackState

__all__ = [
    "FaultRule",
    "JiraState",
    "JiraWebhookSender",
    "PagerDutyState",
    "RecordedCall",
    "Sandbox",
    "SandboxState",
    "SlackState",
    "start_sandbox",
]
