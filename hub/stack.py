"""Run the hub's processes locally: the receiver and the worker as child processes.

Used by ``switchboard demo``, the integration tests and the benchmark, so that all three run the
hub exactly as a user does (``switchboard receiver`` / ``switchboard worker``), on a real broker.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hub_env(*, bootstrap: str, prefix: str, data_dir: Path, receiver_port: int, slack_url: str | None = None,
            pagerduty_url: str | None = None, jira_secret: str | None = None, slack_token: str | None = None,
            pagerduty_services: dict[str, str] | None = None, routing_file: Path | None = None, ca_file: Path | None = None,
            extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment variables configuring one hub (see hub/settings.py for every key)."""
    env = {
        "SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "SWITCHBOARD_KAFKA__TOPIC_PREFIX": prefix,
        "SWITCHBOARD_DATA_DIR": str(data_dir),
        "SWITCHBOARD_RECEIVER__PORT": str(receiver_port),
    }
    if slack_url:
        env["SWITCHBOARD_SLACK__BASE_URL"] = slack_url.rstrip("/") + "/api/"
    if slack_token:
        env["SWITCHBOARD_SLACK__BOT_TOKEN"] = slack_token
    if pagerduty_url:
        env["SWITCHBOARD_PAGERDUTY__EVENTS_URL"] = pagerduty_url
    for name, key in (pagerduty_services or {}).items():
        env[f"SWITCHBOARD_PAGERDUTY__SERVICES__{name.upper()}"] = key
    if jira_secret:
        env["SWITCHBOARD_JIRA__WEBHOOK_SECRET"] = jira_secret
    if routing_file:
        env["SWITCHBOARD_ROUTING_FILE"] = str(routing_file)
    if ca_file:
        env["SWITCHBOARD_TLS_CA_FILE"] = str(ca_file)
    env.update(extra or {})
    return env


#: the sandbox's fixed identities: the Zendesk custom fields and the Jira field the demo and tests use
SANDBOX_ZENDESK_KEY_FIELD, SANDBOX_ZENDESK_LINKS_FIELD, SANDBOX_ZENDESK_STATUS_FIELD = 360001, 360002, 360003
SANDBOX_JIRA_TICKET_FIELD = "customfield_10051"


def sandbox_env(urls: dict[str, str], *, jira_email: str, jira_token: str, zendesk_email: str, zendesk_token: str,
                zendesk_secret: str, zendesk_hub_user_id: int | str, api_token: str | None = None,
                project_keys: tuple[str, ...] = ("OPS", "SUP", "LEGAL")) -> dict[str, str]:
    """Settings that point the hub's Jira and Zendesk clients at the sandbox fakes."""
    import json

    env = {
        "SWITCHBOARD_JIRA__SITE_URL": urls["jira"], "SWITCHBOARD_JIRA__EMAIL": jira_email, "SWITCHBOARD_JIRA__API_TOKEN": jira_token,
        "SWITCHBOARD_ZENDESK__BASE_URL": urls["zendesk"], "SWITCHBOARD_ZENDESK__EMAIL": zendesk_email,
        "SWITCHBOARD_ZENDESK__API_TOKEN": zendesk_token, "SWITCHBOARD_ZENDESK__WEBHOOK_SECRET": zendesk_secret,
        "SWITCHBOARD_ZENDESK__HUB_USER_ID": str(zendesk_hub_user_id),
        "SWITCHBOARD_SUPPORT__ZENDESK_URL": "https://example.zendesk.com",
        "SWITCHBOARD_SUPPORT__ZENDESK_KEY_FIELD_ID": str(SANDBOX_ZENDESK_KEY_FIELD),
        "SWITCHBOARD_SUPPORT__ZENDESK_LINKS_FIELD_ID": str(SANDBOX_ZENDESK_LINKS_FIELD),
        "SWITCHBOARD_SUPPORT__ZENDESK_STATUS_FIELD_ID": str(SANDBOX_ZENDESK_STATUS_FIELD),
        "SWITCHBOARD_SUPPORT__JIRA_TICKET_FIELD_ID": SANDBOX_JIRA_TICKET_FIELD,
        "SWITCHBOARD_SUPPORT__PROJECT_KEYS": json.dumps(list(project_keys)),
    }
    if api_token:
        env["SWITCHBOARD_RECEIVER__API_TOKEN"] = api_token
    return env


@dataclass
class HubProcesses:
    env: dict[str, str]
    log_dir: Path
    receiver_port: int
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    _logs: list = field(default_factory=list)
    #: where each process's pid goes (``<name>.pid``) while it runs, for whoever must stop the
    #: processes of a run whose parent was killed (hub/bench.py's sweep); ``None``: nowhere
    pid_dir: Path | None = None

    def _spawn(self, role: str, name: str | None = None, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start ``switchboard <role>`` as the process called ``name`` (default: the role), logging to ``<name>.log``."""
        name = name or role
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")
        self._logs.append(log)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_") or k == "SWITCHBOARD_LIBRARY_LOG_LEVEL"}
        env.update(self.env)
        env.update(extra_env or {})
        env.setdefault("PYTHONUNBUFFERED", "1")
        proc = subprocess.Popen([sys.executable, "-m", "hub.cli", role], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[name] = proc
        if self.pid_dir is not None:
            self.pid_dir.mkdir(parents=True, exist_ok=True)
            (self.pid_dir / f"{name}.pid").write_text(str(proc.pid))
        return proc

    def _exited(self, role: str) -> None:
        if self.pid_dir is not None:
            (self.pid_dir / f"{role}.pid").unlink(missing_ok=True)

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}"

    def start_receiver(self, timeout: float = 60.0) -> None:
        self._spawn("receiver")
        self.wait_http(f"{self.receiver_url}/health", timeout, role="receiver")

    def start_web(self, port: int, timeout: float = 60.0) -> None:
        """Start ``switchboard web`` (the operators' view) on ``port``; returns once /health answers 200."""
        self.env["SWITCHBOARD_WEB__PORT"] = str(port)
        self._spawn("web")
        self.wait_http(f"http://127.0.0.1:{port}/health", timeout, role="web")

    def start_worker(self, timeout: float = 90.0, *, name: str = "worker", extra_env: dict[str, str] | None = None) -> None:
        """Start a worker and wait until faust says it is ready (partitions assigned).

        More workers of the same group run side by side under different ``name``s, each with its
        own ``SWITCHBOARD_DATA_DIR`` in ``extra_env`` (faust's local table stores are per process).
        """
        log_path = self.log_dir / f"{name}.log"
        start_at = log_path.stat().st_size if log_path.exists() else 0
        proc = self._spawn("worker", name, extra_env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; last lines:\n{self.tail(name)}")
            with open(log_path, "rb") as f:
                f.seek(start_at)
                if b"worker.ready" in f.read():
                    return
            time.sleep(0.2)
        raise TimeoutError(f"{name} not ready after {timeout}s; last lines:\n{self.tail(name)}")

    def wait_http(self, url: str, timeout: float, role: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs.get(role)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{role} exited with {proc.returncode}; last lines:\n{self.tail(role)}")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{role} not answering {url} after {timeout}s; last lines:\n{self.tail(role)}")

    def kill(self, role: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.get(role)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=30)
            self._exited(role)

    def stop(self, role: str, timeout: float = 30.0) -> None:
        proc = self.procs.get(role)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self._exited(role)

    def stop_all(self) -> None:
        for role in list(self.procs):
            self.stop(role)
        for log in self._logs:
            log.close()
        self._logs.clear()

    def tail(self, role: str, lines: int = 40) -> str:
        path = self.log_dir / f"{role}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
