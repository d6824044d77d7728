"""A real Apache Kafka broker run by the project itself, for the tests, the local demo and CI.

Kafka comes from Maven Central (``org.apache.kafka:kafka_2.13`` and its runtime jars), is cached
outside the repository (``$SWITCHBOARD_CACHE`` or ``~/.cache/switchboard``) and runs as
``java -cp '<lib>/*' kafka.Kafka server.properties``: no download script, no Docker, no ZooKeeper.
:class:`LocalBroker` is one KRaft node (broker and controller in one process) on 127.0.0.1.

Command line (``python -m hub.broker``, also wired as ``switchboard broker``)::

    start [--data-dir .switchboard/broker] [--port 9092]   # detached; idempotent
    status | stop | logs [-n 40]

With ``KAFKA_BOOTSTRAP_SERVERS`` set, ``start`` only checks that this cluster answers.
Nothing here does any work at import time.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import fcntl
import functools
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

KAFKA_VERSION = os.environ.get("SWITCHBOARD_KAFKA_VERSION", "4.4.0")
#: Kafka 4 brokers need Java 17 or newer.
JAVA_MIN_MAJOR = 17
LOG4J2_CONFIG = Path(__file__).with_name("config") / "log4j2.yaml"
DEFAULT_DATA_DIR = Path(".switchboard/broker")
DEFAULT_PORT = 9092

# Kafka's own GC flags. Measured here (2 cores, 512m heap, Java 17): G1 is ready as fast as
# SerialGC (3-5 s) and stays at about 330 MB RSS where SerialGC sits at 420 MB.
JVM_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)

_MARKER = ".complete"  # written into lib/ only after Maven copied every jar


class BrokerError(RuntimeError):
    """The local broker could not be provided; the message says what is missing and what to do."""


def cache_dir() -> Path:
    """Return the cache folder for downloaded jars: ``$SWITCHBOARD_CACHE`` or ``~/.cache/switchboard``."""
    return Path(os.environ.get("SWITCHBOARD_CACHE") or Path.home() / ".cache" / "switchboard")


@functools.cache
def find_java() -> str:
    """Return the ``java`` executable (``$JAVA_HOME/bin/java`` first), checking it is Java 17+."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home and (Path(home) / "bin" / "java").exists() else None
    java = java or shutil.which("java")
    if not java:
        raise BrokerError("java not found: install OpenJDK 17+ (apt-get install openjdk-17-jre-headless)")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):  # "1.8.0_392" style
        major = int(match.group(2))
    if major < JAVA_MIN_MAJOR:
        raise BrokerError(
            f"{java} is Java {major or '?'}; Kafka needs Java {JAVA_MIN_MAJOR}+: install OpenJDK 17 "
            "(apt-get install openjdk-17-jre-headless) or point JAVA_HOME at one"
        )
    return java


def ensure_kafka_jars(version: str = KAFKA_VERSION, log: Callable[[str], object] = print) -> Path:
    """Return ``<cache>/kafka-<version>/lib`` holding the broker's jars, fetching them with Maven if missing.

    The first call downloads about 45 jars (≈45 MB) from Maven Central into ``~/.m2`` and copies
    them; later calls only check a marker file. A half-done copy (no marker) is redone. Maven runs
    offline first when ``~/.m2`` already has the broker jar. Concurrent callers wait on a lock.
    """
    home = cache_dir() / f"kafka-{version}"
    lib = home / "lib"
    if (lib / _MARKER).exists():
        return lib
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (lib / _MARKER).exists():  # another process finished while we waited
            return lib
        find_java()  # Maven is useless without it, and this error is the clearer one
        mvn = shutil.which("mvn")
        if not mvn:
            raise BrokerError(
                f"mvn not found: it is needed once to download Kafka {version} into {lib}. "
                "Install Maven 3.6+ (apt-get install maven), or run against your own cluster "
                "by setting KAFKA_BOOTSTRAP_SERVERS"
            )
        log(f"Downloading Apache Kafka {version} with Maven into {lib} (first run only, ~45 MB) ...")
        started = time.monotonic()
        shutil.rmtree(lib, ignore_errors=True)
        # Kafka's POM brings log4j but not the SLF4J binding its tarball ships, without which
        # the broker logs nothing at all. Pass 1 learns the log4j version, pass 2 adds the binding.
        _write_pom(home, version, log4j=None)
        _maven(mvn, home, lib, version)
        log4j = _log4j_version(lib)
        _write_pom(home, version, log4j=log4j)
        _maven(mvn, home, lib, version)
        if not (lib / f"kafka_2.13-{version}.jar").exists():
            raise BrokerError(f"Maven finished but {lib} has no kafka_2.13-{version}.jar; delete {home} and retry")
        jars = sorted(p.name for p in lib.glob("*.jar"))
        (lib / _MARKER).write_text("\n".join(jars) + "\n")
        log(f"Kafka {version}: {len(jars)} jars ready in {time.monotonic() - started:.1f}s")
        return lib


def _write_pom(home: Path, version: str, log4j: str | None) -> None:
    dep = "<dependency><groupId>{}</groupId><artifactId>{}</artifactId><version>{}</version></dependency>"
    deps = [dep.format("org.apache.kafka", "kafka_2.13", version)]
    if log4j:
        deps.append(dep.format("org.apache.logging.log4j", "log4j-slf4j-impl", log4j))
    (home / "pom.xml").write_text(
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        "  <!-- written by hub/broker.py: the jars of an Apache Kafka broker -->\n"
        f"  <groupId>local.switchboard</groupId><artifactId>kafka-runtime</artifactId><version>{version}</version>\n"
        "  <dependencies>\n    " + "\n    ".join(deps) + "\n  </dependencies>\n</project>\n"
    )


def _maven(mvn: str, home: Path, lib: Path, version: str) -> None:
    cmd = [mvn, "-B", "-q", "-f", str(home / "pom.xml"),
           "dependency:copy-dependencies", f"-DoutputDirectory={lib}", "-DincludeScope=runtime"]
    m2_jar = Path.home() / f".m2/repository/org/apache/kafka/kafka_2.13/{version}/kafka_2.13-{version}.jar"
    if m2_jar.exists() and subprocess.run([*cmd, "-o"], capture_output=True).returncode == 0:
        return
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        text = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)  # Maven colours even with -B
        errors = [line.removesuffix(" -> [Help 1]") for line in text.splitlines() if line.startswith("[ERROR] ")]
        tail = errors[0] if errors else "\n".join(text.strip().splitlines()[-20:])
        raise BrokerError(
            f"Maven could not fetch org.apache.kafka:kafka_2.13:{version} (exit {proc.returncode}). "
            "Check access to Maven Central (or a mirror in ~/.m2/settings.xml) and that the version "
            f"exists, or set KAFKA_BOOTSTRAP_SERVERS to use your own cluster.\n{tail}"
        )


def _log4j_version(lib: Path) -> str:
    for jar in lib.glob("log4j-api-*.jar"):
        return jar.name.removeprefix("log4j-api-").removesuffix(".jar")
    raise BrokerError(f"no log4j-api jar in {lib}: this Kafka version's dependencies are unexpected")


# --------------------------------------------------------------------------- readiness probe


@dataclass(frozen=True)
class ClusterInfo:
    """What a Kafka cluster said about itself in a Metadata response."""

    cluster_id: str | None
    controller_id: int
    brokers: tuple[tuple[int, str, int], ...]  # (node id, host, port) of the live brokers


def probe_cluster(bootstrap: str, timeout: float = 2.0) -> ClusterInfo:
    """Ask ``bootstrap`` ("host:port[,host:port]") for cluster metadata over a plain socket.

    Sync and loop-free, so it works from any code and inside pytest. Raises ``OSError`` when no
    address answers, :class:`BrokerError` when one answers but speaks an unexpected protocol.
    """
    error: OSError = OSError(f"no address in {bootstrap!r}")
    for address in filter(None, (a.strip() for a in bootstrap.split(","))):
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as sock:
                sock.settimeout(timeout)
                return _metadata(sock)
        except OSError as exc:  # includes timeouts and refused connections
            error = exc
    raise error


_API_METADATA, _API_VERSIONS = 3, 18
_METADATA_VERSION = 4  # oldest version Kafka 4 keeps (KIP-896 removed v0-v3); non-flexible encoding


def _metadata(sock: socket.socket) -> ClusterInfo:
    body = _call(sock, _API_VERSIONS, 0, 1, b"")
    (error_code, count), pos = struct.unpack_from(">hi", body), 6
    if error_code:
        raise BrokerError(f"ApiVersions failed with error code {error_code}")
    ranges = {}
    for _ in range(count):
        key, low, high = struct.unpack_from(">hhh", body, pos)
        ranges[key], pos = (low, high), pos + 6
    low, high = ranges.get(_API_METADATA, (0, -1))
    if not low <= _METADATA_VERSION <= high:
        raise BrokerError(f"broker serves Metadata v{low}-v{high}; hub/broker.py's probe speaks v{_METADATA_VERSION}")
    # topics = [] (none), allow_auto_topic_creation = false
    body = _call(sock, _API_METADATA, _METADATA_VERSION, 2, struct.pack(">ib", 0, 0))
    (count,), pos = struct.unpack_from(">i", body, 4), 8  # skip throttle_time_ms
    brokers = []
    for _ in range(count):
        (node_id,), pos = struct.unpack_from(">i", body, pos), pos + 4
        host, pos = _string(body, pos)
        (port,), pos = struct.unpack_from(">i", body, pos), pos + 4
        _rack, pos = _string(body, pos)
        brokers.append((node_id, host or "", port))
    cluster_id, pos = _string(body, pos)
    (controller_id,) = struct.unpack_from(">i", body, pos)
    return ClusterInfo(cluster_id, controller_id, tuple(brokers))


def _call(sock: socket.socket, api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    client_id = b"switchboard-probe"
    request = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id + body
    sock.sendall(struct.pack(">i", len(request)) + request)
    (size,) = struct.unpack(">i", _recv(sock, 4))
    response = _recv(sock, size)
    if struct.unpack_from(">i", response)[0] != correlation_id:
        raise BrokerError("Kafka answered out of order")
    return response[4:]


def _recv(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("Kafka closed the connection")
        data += chunk
    return bytes(data)


def _string(buf: bytes, pos: int) -> tuple[str | None, int]:
    (length,) = struct.unpack_from(">h", buf, pos)
    if length < 0:
        return None, pos + 2
    return buf[pos + 2 : pos + 2 + length].decode(), pos + 2 + length


# --------------------------------------------------------------------------- the broker


def _free_port(avoid: int | None = None) -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port != avoid:
            return port


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        # like the JVM's ServerSocketChannel, so a port left in TIME_WAIT by a killed broker is free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _new_cluster_id() -> str:
    # Kafka's Uuid.toString(): URL-safe base64 of 16 random bytes without padding, never "-..."
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LocalBroker:
    """One Kafka node in KRaft combined mode (broker + controller) on 127.0.0.1, data in ``data_dir``.

    Ports are chosen once (free ones when ``None``) and kept by :meth:`restart`. ``extra_props``
    override any generated key. A 3-node cluster is three instances with node ids 1-3, one
    ``cluster_id``, ``extra_props={"controller.quorum.voters": "1@127.0.0.1:C1,2@127.0.0.1:C2,
    3@127.0.0.1:C3", "default.replication.factor": 3, "min.insync.replicas": 2}`` plus the
    internal topics' factors at 3, each started with ``start(wait=False)`` then ``wait_ready()``.
    Usable as a context manager (start on enter, stop on exit).
    """

    def __init__(
        self,
        data_dir: Path | str,
        port: int | None = None,
        controller_port: int | None = None,
        heap: str = "512m",
        node_id: int = 1,
        extra_props: Mapping[str, object] | None = None,
        *,
        cluster_id: str | None = None,
        version: str = KAFKA_VERSION,
        log: Callable[[str], object] = print,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port or _free_port()
        self.controller_port = controller_port or _free_port(avoid=self.port)
        self.heap = heap
        self.node_id = node_id
        self.extra_props = dict(extra_props or {})
        self.cluster_id = cluster_id
        self.version = version
        self.log = log
        self._proc: subprocess.Popen[bytes] | None = None
        self._detached = False

    # -- files in data_dir
    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"``, for ``bootstrap_servers``."""
        return f"127.0.0.1:{self.port}"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dir(self) -> Path:
        """Where Kafka keeps partitions and the KRaft metadata log."""
        return self.data_dir / "kafka-data"

    @property
    def log_files(self) -> tuple[Path, Path]:
        """The broker's log4j log (WARN and above) and the JVM's own stdout/stderr."""
        return self.data_dir / "server.log", self.data_dir / "broker.out"

    @property
    def _pidfile(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def _statefile(self) -> Path:
        return self.data_dir / "broker.json"

    @classmethod
    def from_data_dir(cls, data_dir: Path | str, **overrides: object) -> LocalBroker:
        """Rebuild the broker last started in ``data_dir`` (same ports, node id and heap)."""
        state_file = Path(data_dir) / "broker.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        fields = ("port", "controller_port", "heap", "node_id", "version")
        kwargs = {k: state[k] for k in fields if k in state} | {k: v for k, v in overrides.items() if v is not None}
        return cls(data_dir, **kwargs)  # type: ignore[arg-type]

    def server_properties(self) -> dict[str, str]:
        """The generated ``server.properties`` as a dict (``extra_props`` applied last)."""
        props: dict[str, object] = {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            # Static quorum (format without --standalone). Both kinds run a single node on 4.4
            # (checked, including a restart on a new controller port); static wins for what
            # comes next: a 3-node cluster is the same voters line and the same plain format
            # on every node, whereas a dynamic quorum formats one node --standalone and adds the
            # others with kafka-metadata-quorum, recording voter endpoints in the metadata log.
            # The apache/kafka image also formats without --standalone (see docker-compose.yml).
            "controller.quorum.voters": f"{self.node_id}@127.0.0.1:{self.controller_port}",
            "log.dirs": self.log_dir,
            "num.partitions": 1,
            "auto.create.topics.enable": "false",  # the hub creates every topic from its declaration
            "offsets.topic.replication.factor": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "default.replication.factor": 1,
            "min.insync.replicas": 1,
            "group.initial.rebalance.delay.ms": 0,
            # After a crash the restarted controller refuses the broker's new registration until
            # the old session expires (DUPLICATE_BROKER_REGISTRATION): 9 s by default, 4 s here,
            # which halves kill()+restart() in fault tests (about 6 s instead of 13 s here).
            "broker.heartbeat.interval.ms": 1000,
            "broker.session.timeout.ms": 4000,
            "log.retention.hours": 168,
            "log.retention.check.interval.ms": 300_000,
        }
        props.update(self.extra_props)
        return {k: str(v) for k, v in props.items()}

    # -- lifecycle
    @property
    def pid(self) -> int | None:
        """Process id of the running broker (ours or one started detached in ``data_dir``), else None."""
        if self._proc is not None:
            return self._proc.pid if self._proc.poll() is None else None
        try:
            pid = int(self._pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._is_our_java(pid) else None

    def is_running(self) -> bool:
        """True while the broker process is alive (it may not answer yet, see :meth:`start`)."""
        return self.pid is not None

    def start(self, timeout: float = 90, *, detach: bool = False, wait: bool = True) -> LocalBroker:
        """Start the broker and return once it answers a Metadata request listing itself.

        Formats the storage on first use. Idempotent when already running. The process stops
        with ours unless ``detach`` (the CLI uses that) or when started from a non-main thread.
        ``wait=False`` returns at once (nodes of a cluster must all start before any is ready;
        call :meth:`wait_ready` after). Raises :class:`BrokerError` with the tail of the
        broker's log if it dies or does not answer within ``timeout`` seconds.
        """
        if self.is_running():
            if wait:
                self.wait_ready(timeout)
            return self
        lib = ensure_kafka_jars(self.version, self.log)
        java = find_java()
        began = time.monotonic()  # the one-time download does not count against the timeout
        for port in (self.port, self.controller_port):
            if _port_in_use(port):
                raise BrokerError(
                    f"port {port} on 127.0.0.1 is already in use (another Kafka?): stop it or choose another port"
                )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(
            "# written by hub/broker.py; edits are overwritten at the next start\n"
            + "".join(f"{k}={v}\n" for k, v in self.server_properties().items())
        )
        self._format(java, lib)
        cmd = [java, f"-Xmx{self.heap}", f"-Xms{self.heap}", *JVM_FLAGS,
               f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}", f"-Dkafka.logs.dir={self.data_dir}",
               "-cp", f"{lib}/*", "kafka.Kafka", str(self.properties_file)]
        self._detached = detach
        tie = not detach and threading.current_thread() is threading.main_thread() and sys.platform == "linux"
        out = self.log_files[1]
        with open(out, "ab") as sink:
            sink.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting Kafka {self.version}\n".encode())
            sink.flush()
            self._proc = subprocess.Popen(
                cmd, cwd=self.data_dir, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal is ours to handle, not the JVM's
                preexec_fn=_die_with_parent if tie else None,
            )
        self._pidfile.write_text(f"{self._proc.pid}\n")
        self._statefile.write_text(json.dumps({
            "port": self.port, "controller_port": self.controller_port, "heap": self.heap,
            "node_id": self.node_id, "version": self.version, "bootstrap": self.bootstrap,
        }, indent=2) + "\n")
        if wait:
            self.wait_ready(timeout)
            self.log(f"Kafka {self.version} ready at {self.bootstrap} in {time.monotonic() - began:.1f}s "
                     f"(pid {self._proc.pid}, data {self.data_dir})")
        return self

    def wait_ready(self, timeout: float = 90) -> ClusterInfo:
        """Block until this node is listed as a live broker; raise :class:`BrokerError` otherwise."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise BrokerError(
                    f"Kafka exited with code {self._proc.returncode} while starting. "
                    f"Last lines of its logs:\n{self.log_tail()}"
                )
            if not self.is_running():
                raise BrokerError(f"Kafka in {self.data_dir} is not running. Last lines of its logs:\n"
                                  f"{self.log_tail()}")
            try:
                info = probe_cluster(self.bootstrap, timeout=2)
                if any(node == self.node_id for node, _, _ in info.brokers):
                    return info
            except OSError as exc:
                last = exc
            time.sleep(0.2)
        self.stop()
        raise BrokerError(
            f"Kafka did not answer on {self.bootstrap} within {timeout:.0f}s ({last or 'not registered'}); "
            f"it was stopped. Last lines of its logs:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 30) -> None:
        """Stop gracefully (SIGTERM), then SIGKILL after ``timeout`` seconds. No-op when not running."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL the broker at once, like a crash (for fault tests). Data stays in ``data_dir``."""
        self._signal(signal.SIGKILL, 10)

    def restart(self, timeout: float = 90) -> LocalBroker:
        """Stop (if running) and start again on the same ports with the same data."""
        detached = self._detached or (self._proc is None and self.is_running())
        self.stop()
        return self.start(timeout, detach=detached)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the broker's log files (for error messages and ``logs``)."""
        parts = []
        for path in self.log_files:
            if path.exists() and path.stat().st_size:
                with open(path, "rb") as f:
                    f.seek(max(0, f.seek(0, os.SEEK_END) - 256 * 1024))
                    text = f.read().decode(errors="replace").splitlines()[-lines:]
                parts.append(f"==> {path} <==\n" + "\n".join(text))
        return "\n".join(parts) or f"(no log output in {self.data_dir})"

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalBroker({str(self.data_dir)!r}, bootstrap={self.bootstrap!r}, pid={self.pid})"

    # -- internals
    def _format(self, java: str, lib: Path) -> None:
        if (self.log_dir / "meta.properties").exists():
            return
        self.cluster_id = self.cluster_id or _new_cluster_id()
        cmd = [java, f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}", f"-Dkafka.logs.dir={self.data_dir}",
               "-cp", f"{lib}/*", "kafka.tools.StorageTool", "format",
               "-t", self.cluster_id, "-c", str(self.properties_file)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BrokerError(
                f"formatting {self.log_dir} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr).strip()}"
            )

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if not self._wait_exit(pid, timeout) and sig != signal.SIGKILL:
                self.log(f"Kafka (pid {pid}) did not stop within {timeout:.0f}s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._wait_exit(pid, 10)
        self._proc = None
        self._pidfile.unlink(missing_ok=True)

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._is_our_java(pid):
                return True
            time.sleep(0.1)
        return False

    def _is_our_java(self, pid: int) -> bool:
        import psutil  # lazily: only the detached-broker paths need it

        try:
            proc = psutil.Process(pid)
            return proc.status() != psutil.STATUS_ZOMBIE and str(self.properties_file) in proc.cmdline()
        except psutil.Error:
            return False


class LocalCluster:
    """A KRaft cluster of ``size`` combined nodes (node ids 1…size) on 127.0.0.1, one folder each
    under ``data_dir``: replication factor ``size`` for every topic (internal ones included) and
    ``min.insync.replicas`` = ``min_insync``, so an ``acks=all`` write survives the loss of
    ``size - min_insync`` nodes. Every node is also a controller voter (a majority must live).

    :meth:`kill` / :meth:`start_node` crash and bring back one node (same ports and data), for
    fault tests. Usable as a context manager.
    """

    def __init__(self, data_dir: Path | str, size: int = 3, *, min_insync: int = 2, heap: str = "384m",
                 version: str = KAFKA_VERSION, log: Callable[[str], object] = print) -> None:
        if not 1 <= min_insync <= size:
            raise ValueError("min_insync must be between 1 and the cluster size")
        root = Path(data_dir).resolve()
        ports: list[int] = []
        for _ in range(2 * size):
            port = _free_port()
            while port in ports:
                port = _free_port()
            ports.append(port)
        voters = ",".join(f"{n + 1}@127.0.0.1:{ports[size + n]}" for n in range(size))
        props = {
            "controller.quorum.voters": voters,
            "default.replication.factor": size,
            "min.insync.replicas": min_insync,
            "offsets.topic.replication.factor": size,
            "transaction.state.log.replication.factor": size,
            "transaction.state.log.min.isr": min_insync,
            "share.coordinator.state.topic.replication.factor": size,
            "share.coordinator.state.topic.min.isr": min_insync,
        }
        cluster_id = _new_cluster_id()
        self.log = log
        self.nodes = [
            LocalBroker(root / f"node{n + 1}", port=ports[n], controller_port=ports[size + n], heap=heap, node_id=n + 1,
                        extra_props=props, cluster_id=cluster_id, version=version, log=log)
            for n in range(size)
        ]

    @property
    def bootstrap(self) -> str:
        """Every node's address, comma-separated (clients need only one to answer)."""
        return ",".join(node.bootstrap for node in self.nodes)

    def start(self, timeout: float = 120) -> LocalCluster:
        """Start every node, then wait until each one is registered as a live broker."""
        began = time.monotonic()
        for node in self.nodes:
            node.start(timeout, wait=False)
        for node in self.nodes:
            node.wait_ready(max(1.0, timeout - (time.monotonic() - began)))
        self.log(f"Kafka cluster of {len(self.nodes)} ready at {self.bootstrap} in {time.monotonic() - began:.1f}s")
        return self

    def kill(self, node_id: int) -> None:
        """SIGKILL one node, like a crash; its data stays."""
        self.nodes[node_id - 1].kill()

    def start_node(self, node_id: int, timeout: float = 90) -> None:
        """Bring a stopped node back on its ports with its data, and wait until it is live again."""
        self.nodes[node_id - 1].start(timeout)

    def stop(self, timeout: float = 20) -> None:
        """Stop every node at once: one by one, the last ones wait in vain for a controller quorum."""
        threads = [threading.Thread(target=node.stop, args=(timeout,)) for node in self.nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None, prog: str = "python -m hub.broker") -> int:
    """Run the broker command line (``start|stop|status|logs``); returns the exit code."""
    parser = argparse.ArgumentParser(prog=prog, description="Run a local Apache Kafka broker for Switchboard.")
    parser.add_argument("command", choices=("start", "stop", "status", "logs"))
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help=f"broker state and logs (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--port", type=int, help=f"client port (default: the last one used, else {DEFAULT_PORT})")
    parser.add_argument("--heap", help="JVM heap, e.g. 512m (default: the last one used, else 512m)")
    parser.add_argument("-n", "--lines", type=int, default=40, help="lines to show for 'logs'")
    parser.add_argument("--timeout", type=float, default=90, help="seconds to wait for 'start'")
    args = parser.parse_args(argv)
    args.prog = prog
    try:
        return _COMMANDS[args.command](args)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _cmd_start(args: argparse.Namespace) -> int:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        try:
            info = probe_cluster(external, timeout=5)
        except OSError as exc:
            print(f"error: KAFKA_BOOTSTRAP_SERVERS={external} does not answer ({exc}). "
                  "Start that cluster, or unset the variable to run a local broker.", file=sys.stderr)
            return 1
        print(f"Using the Kafka cluster at {external} (KAFKA_BOOTSTRAP_SERVERS; cluster id {info.cluster_id}, "
              f"{len(info.brokers)} broker(s)); no local broker started.")
        return 0
    broker = LocalBroker.from_data_dir(args.data_dir, heap=args.heap)
    if broker.is_running():
        if args.port and args.port != broker.port:
            print(f"error: the broker in {args.data_dir} already runs on port {broker.port}; stop it first "
                  f"to move it to {args.port}", file=sys.stderr)
            return 1
        broker.wait_ready(args.timeout)
        print(f"Kafka already running at {broker.bootstrap} (pid {broker.pid}).")
        return 0
    if args.port or not (args.data_dir / "broker.json").exists():
        broker.port = args.port or DEFAULT_PORT
        if broker.controller_port == broker.port:
            broker.controller_port = _free_port(avoid=broker.port)
    if _port_in_use(broker.controller_port):  # ports stored last time may be taken by now
        broker.controller_port = _free_port(avoid=broker.port)
    broker.start(args.timeout, detach=True)
    print(f"Kafka running at {broker.bootstrap} (pid {broker.pid}); stop it with: {args.prog} stop")
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    broker = LocalBroker.from_data_dir(args.data_dir)
    if not broker.is_running():
        print(f"Kafka is not running (data dir {args.data_dir}).")
        return 0
    pid = broker.pid
    broker.stop()
    print(f"Kafka stopped (pid {pid}).")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    broker = LocalBroker.from_data_dir(args.data_dir)
    pid = broker.pid
    if pid is None:
        print("not running")
        return 3
    try:
        probe_cluster(broker.bootstrap)
        state = "answering"
    except OSError:
        state = "not answering yet"
    print(f"running: bootstrap {broker.bootstrap} pid {pid} ({state}; data {broker.data_dir})")
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    print(LocalBroker.from_data_dir(args.data_dir).log_tail(args.lines))
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "start": _cmd_start, "stop": _cmd_stop, "status": _cmd_status, "logs": _cmd_logs,
}


if __name__ == "__main__":
    sys.exit(main())
