"""Typed, validated, secret-aware settings.

Sources, highest priority first: environment variables (``SWITCHBOARD_…``, nested with ``__``,
e.g. ``SWITCHBOARD_SLACK__BOT_TOKEN``), then the YAML file named by ``SWITCHBOARD_CONFIG``
(or ``--config``), then the defaults below. ``KAFKA_BOOTSTRAP_SERVERS`` is honoured as a shortcut
for ``SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS``.

Secrets are ``SecretStr``: they print as ``**********`` and only ``get_secret_value()`` at the
point of use reveals them. ``switchboard check-config`` loads everything here and names the first
bad key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from connectors.jira.settings import JiraSettings
from connectors.salesforce.settings import SalesforceSettings
from connectors.zendesk.settings import ZendeskSettings
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

DEFAULT_ROUTING_FILE = Path(__file__).parent / "config" / "routing.example.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    #: prefix of every topic name (and of the consumer group), so several hubs can share a cluster
    topic_prefix: str = "switchboard."
    #: partitions of every keyed topic and of the faust changelog topics
    partitions: int = Field(4, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1, le=16)
    #: a worker that stops heartbeating loses its partitions after this long (its survivor, or its
    #: restarted self, takes over then): short enough for fast failover, long enough for GC pauses
    session_timeout_s: float = Field(10.0, ge=6.0, le=300.0)
    #: seconds to wait for the broker's acknowledgement before a webhook is answered 503
    produce_timeout_s: float = Field(10.0, gt=0)
    #: the worker's producer waits this long to fill a batch before sending it: fewer, larger
    #: produce requests (each one costs the worker a socket write) for a little latency per hop
    #: (aiokafka's default is 0; Kafka's own clients moved to 5 ms in 4.0 for the same reason)
    producer_linger_ms: float = Field(2.0, ge=0.0, le=1000.0)
    #: records each agent may read ahead of its work (faust's stream_buffer_maxsize, 4096 by default):
    #: its backlog's prefetch is most of a catching-up worker's memory beyond its 100 MB at rest
    stream_buffer_records: int = Field(1024, ge=16, le=1_000_000)
    #: most bytes fetched per partition per request (faust's consumer_max_fetch_size, aiokafka's
    #: max_partition_fetch_bytes; 1 MB by default). A catching-up worker holds what it fetched for
    #: every partition of every topic it reads: over a 20,000-incident backlog, 512 KB peaked at
    #: 136 MB against 146-149 MB at 1 MB (164 MB over 100,000), and caught up as fast, but under
    #: live load at saturation it delivered about a fifth less (two A/B pairs); 128 KB took 126 MB
    #: but halved the rate. 1024 trades the memory back for that rate. A record larger than this
    #: is still fetched (Kafka returns at least one batch).
    consumer_fetch_kb: int = Field(512, ge=64, le=65536)

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"[A-Za-z0-9._-]*", v):
            raise ValueError("may contain only letters, digits, '.', '_' and '-' (Kafka topic name rules)")
        return v


class SlackSettings(_Section):
    bot_token: SecretStr | None = None
    base_url: str = "https://slack.com/api/"
    #: dry run: actions are recorded on the results topic instead of being sent
    dry_run: bool = False

    @field_validator("bot_token")
    @classmethod
    def _token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().startswith(("xoxb-", "xoxp-")):
            raise ValueError("must be a Slack bot (xoxb-…) or user (xoxp-…) token")
        return v


class PagerDutySettings(_Section):
    events_url: str = "https://events.pagerduty.com"
    #: service name (as used in the routing file) → Events API v2 integration (routing) key
    services: dict[str, SecretStr] = Field(default_factory=dict)
    dry_run: bool = False

    @field_validator("services")
    @classmethod
    def _keys(cls, v: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, key in v.items():
            if len(key.get_secret_value()) != 32:
                raise ValueError(f"routing key of service {name!r} must be 32 characters (an Events API v2 integration key)")
        return v


class DeliverySettings(_Section):
    #: attempts made in place (blocking the partition briefly) before the action moves to the retry topic
    inplace_attempts: int = Field(3, ge=1, le=10)
    #: longest wait in place, seconds; a longer Retry-After moves the action to the retry topic at once
    max_inplace_wait_s: float = Field(10.0, ge=0)
    #: back-off before the first in-place retry when the vendor gave no Retry-After, doubling each time
    backoff_s: float = Field(0.5, gt=0)
    request_timeout_s: float = Field(10.0, gt=0)
    #: actions in flight per vendor delivery agent: different targets overlap, one target's stay in order
    concurrency: int = Field(64, ge=1, le=1024)
    #: calls in flight to one rate-limited target (a Slack channel, a PagerDuty routing key) while it
    #: answers normally; after a 429 its calls go one at a time at the pace the vendor gave
    target_concurrency: int = Field(8, ge=1, le=1024)
    #: seconds between two writes to one target (a Slack message, a Jira issue's view, a Zendesk
    #: ticket): updates arriving meanwhile are coalesced into the next write (0: write each at once)
    coalesce_window_s: float = Field(1.0, ge=0, le=60)


class SupportSettings(_Section):
    """Linking Zendesk tickets to Jira issues (see hub/processors/support.py)."""

    enabled: bool = True
    #: base URL of the Zendesk account, for links to tickets (https://<subdomain>.zendesk.com)
    zendesk_url: str = "https://example.zendesk.com"
    #: project keys recognised in ticket subjects and comments (empty: any key-shaped word)
    project_keys: list[str] = Field(default_factory=list)
    #: Zendesk custom field where agents type Jira keys (read)
    zendesk_key_field_id: str | None = None
    #: Zendesk custom fields the hub writes: the linked keys, and key: status pairs
    zendesk_links_field_id: str | None = None
    zendesk_status_field_id: str | None = None
    #: Jira custom field holding Zendesk ticket ids (read); ticket URLs in any text field also link
    jira_ticket_field_id: str | None = None
    #: Jira number fields for the counts; unset: the issue property ``switchboard.support``
    jira_ticket_count_field_id: str | None = None
    jira_organization_count_field_id: str | None = None
    #: dry run: Jira and Zendesk write-backs are recorded on the results topic instead of being sent
    dry_run: bool = False


class SalesSettings(_Section):
    """Revenue at stake per Jira issue (see hub/processors/sales.py); needs support.enabled (the key side)."""

    enabled: bool = False
    #: project keys recognised in feature request text (empty: any key-shaped word)
    project_keys: list[str] = Field(default_factory=list)
    base_currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    #: currency → value of one unit in base_currency, e.g. {"EUR": 1.08}; empty: no converted total
    rates: dict[str, float] = Field(default_factory=dict)
    #: Jira fields for the revenue view; all unset: the issue property switchboard.revenue
    jira_open_amount_field_id: str | None = None
    jira_weighted_amount_field_id: str | None = None
    jira_opportunity_count_field_id: str | None = None
    jira_close_date_field_id: str | None = None
    #: how the owner of an open opportunity hears that a linked issue is resolved: a Task assigned to
    #: them ("task") or a Chatter post on the opportunity mentioning them ("chatter"); once either way
    owner_notice: Literal["task", "chatter"] = "task"
    #: dry run: Salesforce write-backs and Tasks are recorded on the results topic instead of being sent
    dry_run: bool = False


class ReceiverSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    #: how many recent delivery ids the receiver remembers to drop Jira's retries early
    dedup_cache_size: int = Field(10_000, ge=0)
    #: bearer token for the HTTP API (POST /api/links); unset: the API is off
    api_token: SecretStr | None = None


class ViewerSettings(_Section):
    """One person or tool allowed into the operators' view (``switchboard web``) and its API."""

    #: bearer token (``Authorization: Bearer …``): for the JSON API and ``switchboard top``
    token: SecretStr | None = None
    #: password for HTTP basic auth, the user name being the viewer's name: for browsers
    password: SecretStr | None = None
    #: restricted projects (routing's ``restricted_projects``, a security level, or no project) this
    #: viewer may see in full; ``"*"``: every one. Anyone else sees such issues without their summary
    restricted_projects: list[str] = Field(default_factory=list)
    #: may replay dead letters from the view and the API
    admin: bool = False

    @model_validator(mode="after")
    def _credential(self) -> "ViewerSettings":
        if self.token is None and self.password is None:
            raise ValueError("a viewer needs a token or a password")
        for secret in (self.token, self.password):
            if secret is not None and len(secret.get_secret_value()) < 12:
                raise ValueError("tokens and passwords must be at least 12 characters")
        return self


class WebSettings(_Section):
    """The operators' view and its JSON API (``switchboard web``, see hub/web/)."""

    host: str = "127.0.0.1"
    port: int = Field(8090, ge=0, le=65535)
    #: viewer name → credentials and access; none configured: ``switchboard web`` refuses to start
    viewers: dict[str, ViewerSettings] = Field(default_factory=dict)
    #: timeline entries kept per issue (events and effects, newest kept)
    timeline_size: int = Field(200, ge=10, le=10_000)
    #: dead letters kept in the view (newest kept)
    deadletter_size: int = Field(1000, ge=10, le=100_000)


class MetricsSettings(_Section):
    """Prometheus ``/metrics``: the receiver and the web view serve it on their own port; the worker here."""

    #: port of the worker's /metrics (0: off)
    worker_port: int = Field(0, ge=0, le=65535)
    host: str = "127.0.0.1"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SWITCHBOARD_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    app_id: str = "switchboard"
    #: local state (RocksDB stores of the faust tables); rebuilt from Kafka when lost
    data_dir: Path = Path(".switchboard/data")
    #: the routing file (incidents, channels, receivers, routing tree)
    routing_file: Path = DEFAULT_ROUTING_FILE
    #: seconds between checks of the routing file for changes, applied without a restart (0: never reload)
    routing_reload_s: float = Field(5.0, ge=0)
    #: faust table store: "rocksdb://" (rocksdict, durable local cache) or "memory://"
    store: str = "rocksdb://"
    #: RocksDB memtable size per table partition, in MB (two at most per partition; fractions allowed).
    #: faust's default, 64 MB × 3 for each of the worker's table partitions, let a worker grow past
    #: 290 MB on a 100,000-incident backlog; small values flush to disk more often, which costs a
    #: little CPU
    store_write_buffer_mb: float = Field(0.25, ge=0.0625, le=256)
    #: RocksDB memtables of all the worker's table partitions together, in MB (one write buffer
    #: manager for all, see hub/store.py): past it the memtable being written is flushed to disk.
    #: Without it 52 partitions (every path on, 4 partitions) may hold 26 MB of memtables
    store_write_buffers_total_mb: float = Field(4, ge=0.25, le=4096)
    #: RocksDB block cache in MB, one for all the worker's table partitions (faust's default: 2 GB for
    #: each partition; see hub/store.py)
    store_block_cache_mb: int = Field(8, ge=1, le=4096)
    #: faust's own web server port for the worker (0: disabled)
    worker_web_port: int = 0
    log_level: str = "INFO"
    #: the asyncio event loop of the worker and the receiver: "auto" (uvloop when installed), "uvloop" or "asyncio"
    event_loop: str = "auto"
    #: an extra CA bundle (PEM) trusted for outbound HTTPS: a corporate proxy's, or the sandbox's
    tls_ca_file: Path | None = None
    kafka: KafkaSettings = KafkaSettings()
    jira: JiraSettings = JiraSettings()
    slack: SlackSettings = SlackSettings()
    pagerduty: PagerDutySettings = PagerDutySettings()
    delivery: DeliverySettings = DeliverySettings()
    receiver: ReceiverSettings = ReceiverSettings()
    support: SupportSettings = SupportSettings()
    zendesk: ZendeskSettings = ZendeskSettings()
    salesforce: SalesforceSettings = SalesforceSettings()
    sales: SalesSettings = SalesSettings()
    web: WebSettings = WebSettings()
    metrics: MetricsSettings = MetricsSettings()

    @field_validator("event_loop")
    @classmethod
    def _event_loop(cls, v: str) -> str:
        if v not in ("auto", "uvloop", "asyncio"):
            raise ValueError("must be 'auto', 'uvloop' or 'asyncio'")
        return v

    @field_validator("store")
    @classmethod
    def _store(cls, v: str) -> str:
        if v not in ("rocksdb://", "memory://"):
            raise ValueError("must be 'rocksdb://' or 'memory://'")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("SWITCHBOARD_CONFIG")
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)


class ConfigError(Exception):
    """A setting is missing or invalid. The message names the key and says what to do."""


def _yaml_error(path: str | None, exc: Exception) -> ConfigError:
    """Where and what, from the parser's mark; never the text around it (it may hold a secret)."""
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    return ConfigError(f"SWITCHBOARD_CONFIG {where}: invalid YAML: {problem}; fix the file and run `switchboard check-config`")


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Load and validate the settings; raise :class:`ConfigError` naming the first bad key."""
    import yaml
    from pydantic import ValidationError

    path = str(config_file) if config_file is not None else os.environ.get("SWITCHBOARD_CONFIG")
    if path and not Path(path).is_file():
        raise ConfigError(f"SWITCHBOARD_CONFIG: no such file {path!r}")
    if path:
        try:
            doc = yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as exc:
            raise _yaml_error(path, exc) from None
        if doc is not None and not isinstance(doc, dict):
            raise ConfigError(f"SWITCHBOARD_CONFIG {path}: the top level must be a mapping of settings (kafka:, slack:, …), "
                              f"not a {type(doc).__name__}; see docs/configuration.md")
    kafka_env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if kafka_env and "SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS" not in os.environ:
        overrides.setdefault("kafka", {})
        if isinstance(overrides["kafka"], dict):
            overrides["kafka"].setdefault("bootstrap_servers", kafka_env)
    saved = os.environ.get("SWITCHBOARD_CONFIG")
    try:
        if path:
            os.environ["SWITCHBOARD_CONFIG"] = path  # read by settings_customise_sources
        return Settings(**overrides)
    except yaml.YAMLError as exc:  # the file changed between the two reads
        raise _yaml_error(path, exc) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(settings)"
        env = "SWITCHBOARD_" + "__".join(str(p).upper() for p in first["loc"])
        # pydantic's message, never the input value (it may be a secret)
        raise ConfigError(f"{key}: {first['msg']} (set it in the config file or as {env})") from None
    finally:
        if saved is None:
            os.environ.pop("SWITCHBOARD_CONFIG", None)
        else:
            os.environ["SWITCHBOARD_CONFIG"] = saved
