"""``python -m sandbox``: run the fake Slack, PagerDuty and Jira servers in the foreground.

Prints one ``SANDBOX_<VENDOR>_URL=<url>`` line per fake (and ``SANDBOX_CA_FILE=<path>`` with
``--tls``), then serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from .pagerduty import PagerDutyState
from .salesforce import SalesforceState
from .server import start_sandbox
from .slack import SlackState
from .zendesk import ZendeskState


def _channel(text: str) -> tuple[str, str]:
    channel_id, sep, name = text.partition("=")
    if not sep or not channel_id or not name:
        raise argparse.ArgumentTypeError("expected ID=name, e.g. C0INCIDENT=incidents")
    return channel_id, name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--slack-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--pagerduty-port", type=int, default=0)
    parser.add_argument("--jira-port", type=int, default=0)
    parser.add_argument("--zendesk-port", type=int, default=0)
    parser.add_argument("--salesforce-port", type=int, default=0)
    parser.add_argument("--tls", action="store_true",
                        help="serve HTTPS with a throwaway CA (the pagerduty client needs https)")
    parser.add_argument("--slack-channel", type=_channel, action="append", default=[], metavar="ID=NAME",
                        help="a known Slack channel (repeatable)")
    parser.add_argument("--slack-token", action="append", metavar="TOKEN",
                        help="a valid Slack token (repeatable; default: any xoxb- token)")
    parser.add_argument("--no-auto-create-channels", action="store_true",
                        help="unknown channel names are channel_not_found")
    parser.add_argument("--pagerduty-routing-key", action="append", metavar="KEY",
                        help="a valid integration key (repeatable; default: any 32-character key)")
    parser.add_argument("--no-rate-limits", action="store_true", help="switch the vendors' rate limits off")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    rate_limits = not args.no_rate_limits
    states = {
        "slack": SlackState(dict(args.slack_channel), tokens=args.slack_token,
                            auto_create_channels=not args.no_auto_create_channels, rate_limits=rate_limits),
        "pagerduty": PagerDutyState(args.pagerduty_routing_key, rate_limits=rate_limits),
        "zendesk": ZendeskState(rate_limits=rate_limits),
        "salesforce": SalesforceState(rate_limits=rate_limits),
    }
    ports = {"slack": args.slack_port, "pagerduty": args.pagerduty_port, "jira": args.jira_port,
             "zendesk": args.zendesk_port, "salesforce": args.salesforce_port}
    sandbox = await start_sandbox(args.host, ports, states=states, tls=args.tls, access_log=True)
    for vendor, url in sandbox.urls.items():
        print(f"SANDBOX_{vendor.upper()}_URL={url}", flush=True)
    if sandbox.ca_file:
        print(f"SANDBOX_CA_FILE={sandbox.ca_file}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sandbox.stop()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
