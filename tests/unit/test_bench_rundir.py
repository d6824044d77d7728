"""hub/bench.py RunDir: a bench run's files are removed after it, leftovers of dead runs swept, kept runs left."""

import os
import subprocess
import sys

from hub.bench import RunDir


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _run(root, name, *, pid=None, kept=False, size=1000):
    path = root / "runs" / name
    (path / "broker").mkdir(parents=True)
    (path / "broker" / "00000.log").write_bytes(b"x" * size)
    if pid is not None:
        (path / "pid").write_text(str(pid))
    if kept:
        (path / "kept").write_text("--keep\n")
    return path


def test_a_finished_run_leaves_nothing(tmp_path):
    run = RunDir(tmp_path, "r1").start()
    assert (run.path / "pid").read_text() == str(os.getpid())
    (run.path / "data").mkdir()
    (run.path / "data" / "table.sst").write_bytes(b"y" * 4096)
    run.finish(keep=False)
    assert not run.path.exists()
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_kept_run_is_marked_and_survives_the_next_runs_sweep(tmp_path):
    first = RunDir(tmp_path, "r1").start()
    first.finish(keep=True, why="the run failed: TimeoutError")
    assert (first.path / "kept").read_text().startswith("the run failed")
    assert not (first.path / "pid").exists()
    second = RunDir(tmp_path, "r2").start()
    assert first.path.is_dir() and second.path.is_dir()


def test_sweep_removes_dead_runs_and_the_old_layout_keeps_live_ones(tmp_path):
    dead = _run(tmp_path, "dead", pid=_dead_pid())
    no_pid = _run(tmp_path, "no-pid")
    live = _run(tmp_path, "live", pid=os.getpid())
    kept = _run(tmp_path, "kept", kept=True)
    for legacy in ("broker", "data", "logs"):
        (tmp_path / legacy).mkdir()
    run = RunDir(tmp_path, "new").start()
    assert not dead.exists() and not no_pid.exists()
    assert live.is_dir() and kept.is_dir() and run.path.is_dir()
    # a live run may still be using an older layout's directories: not swept while one runs
    assert all((tmp_path / legacy).is_dir() for legacy in ("broker", "data", "logs"))
    # once no run is alive, the next sweep takes the dead ones and the older layout, never a kept run
    for path in (live, run.path):
        (path / "pid").write_text(str(_dead_pid()))
    swept = RunDir(tmp_path, "newer").sweep()
    assert live in swept and run.path in swept
    assert not live.exists() and not run.path.exists()
    assert not any((tmp_path / legacy).exists() for legacy in ("broker", "data", "logs"))
    assert kept.is_dir()


def test_the_report_is_written_where_no_directory_exists_yet(tmp_path):
    from hub.bench import write_report

    out = tmp_path / "reports" / "bench.json"
    write_report(out, '{"baseline": {}}')
    assert out.read_text() == '{"baseline": {}}\n'


def test_sweep_stops_the_broker_a_killed_run_left_running_before_removing_its_data(tmp_path, monkeypatch):
    import hub.broker

    stopped = []

    class Recorder:
        def __init__(self, data_dir):
            self.data_dir = data_dir

        def stop(self):
            stopped.append((self.data_dir, self.data_dir.exists()))

    monkeypatch.setattr(hub.broker, "LocalBroker", Recorder)
    dead = _run(tmp_path, "dead", pid=_dead_pid())
    (dead / "broker" / "broker.pid").write_text("12345\n")
    live = _run(tmp_path, "live", pid=os.getpid())
    (live / "broker" / "broker.pid").write_text("12346\n")
    RunDir(tmp_path, "new").sweep()
    assert stopped == [(dead / "broker", True)]  # stopped while its data was still there; the live run's left alone
    assert not dead.exists() and live.is_dir()


def test_stopping_an_orphan_broker_whose_process_is_gone_only_drops_its_pid_file(tmp_path):
    from hub.bench import _stop_orphan_broker

    (tmp_path / "broker").mkdir()
    (tmp_path / "broker" / "broker.pid").write_text(f"{_dead_pid()}\n")
    _stop_orphan_broker(tmp_path / "broker")
    assert not (tmp_path / "broker" / "broker.pid").exists()


def _sleeper(*argv: str) -> subprocess.Popen:
    """A process that sleeps, its own session leader, with ``argv`` on its command line."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", *argv], start_new_session=True)


def test_sweep_stops_the_hub_processes_a_killed_run_left_running(tmp_path, capsys):
    dead = _run(tmp_path, "dead", pid=_dead_pid())
    worker = _sleeper("-m", "hub.cli", "worker")
    stranger = _sleeper("not", "a", "hub", "process")  # a pid reused by something else: left alone
    try:
        (dead / "procs").mkdir()
        (dead / "procs" / "worker.pid").write_text(str(worker.pid))
        (dead / "procs" / "receiver.pid").write_text(str(stranger.pid))
        (dead / "procs" / "worker2.pid").write_text(str(_dead_pid()))
        RunDir(tmp_path, "new").sweep()
        assert worker.wait(timeout=20) is not None
        assert stranger.poll() is None
        assert f"stopped 1 hub process (pid {worker.pid})" in capsys.readouterr().out  # and says so
        assert not dead.exists()
    finally:
        for proc in (worker, stranger):
            proc.kill()
            proc.wait()


def test_hub_processes_keep_a_pid_file_while_each_runs(tmp_path, monkeypatch):
    import hub.stack

    real_popen = subprocess.Popen

    def popen(cmd, **kwargs):  # the hub process replaced by a sleeper, started the same way
        return real_popen([sys.executable, "-c", "import time; time.sleep(120)", *cmd[1:]], **kwargs)

    monkeypatch.setattr(hub.stack.subprocess, "Popen", popen)
    procs = hub.stack.HubProcesses(env={}, log_dir=tmp_path / "logs", receiver_port=1, pid_dir=tmp_path / "procs")
    proc = procs._spawn("worker", "worker2")
    try:
        assert (tmp_path / "procs" / "worker2.pid").read_text() == str(proc.pid)
        procs.stop("worker2")
        assert proc.poll() is not None
        assert not (tmp_path / "procs" / "worker2.pid").exists()
    finally:
        procs.stop_all()
