"""Faults of Kafka itself, and more than one worker (issue 5, parts 2 and 4).

- The broker down for 30 s: receivers answer 503 (the webhook is not stored, so it must not be
  acknowledged; Jira retries it), nothing accepted is lost, and the worker resumes by itself.
- Two workers in one group over 4 partitions, one SIGKILLed mid-run: the survivor takes over its
  partitions and their tables (restored from the changelogs), nothing lost or duplicated.
- A three-node KRaft cluster (replication factor 3, min.insync.replicas 2), one node SIGKILLed
  mid-run: nothing lost (long tier: three JVMs and a hub are too much for CI on two cores).

These scenarios bring their own broker or cluster (the session broker must keep running).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from hub.broker import BrokerError, LocalBroker, LocalCluster
from tests.chaos.conftest import assert_clean, close_stack, make_stack
from tests.chaos.harness import Driver, Workload, group_members, settle
from tests.integration.conftest import JIRA_SECRET

pytestmark = pytest.mark.integration

BROKER_DOWN_S = 30.0


def _own(broker_or_cluster):
    try:
        broker_or_cluster.start()
    except BrokerError as exc:
        pytest.fail(f"cannot start a Kafka broker for this scenario:\n{exc}", pytrace=False)
    return broker_or_cluster


@pytest.mark.parametrize("size", [pytest.param(300, id="ci"), pytest.param(5_000, id="long", marks=pytest.mark.chaos)])
async def test_broker_down_30s(tmp_path, chaos_report, size):
    broker = await asyncio.to_thread(_own, LocalBroker(tmp_path / "kafka", log=lambda _m: None))
    st = await make_stack(broker.bootstrap, tmp_path, extra={"SWITCHBOARD_KAFKA__PRODUCE_TIMEOUT_S": "3"})
    try:
        work = Workload(size, first_id=7_000_000, run=st.prefix)
        driver = Driver(st.webhook_url, JIRA_SECRET, work, concurrency=8, pace_s=0.2, retry_s=1.0)
        drive = asyncio.create_task(driver.run())
        await asyncio.sleep(5.0)
        await asyncio.to_thread(broker.kill)
        down_at = time.monotonic()
        await asyncio.sleep(BROKER_DOWN_S)
        await asyncio.to_thread(broker.start)
        up_at = time.monotonic()
        during = dict(driver.stats.statuses)
        await drive
        result, converged = await settle(lambda: st.audit(work), timeout=180, since=up_at)
        alive = {name: st.procs.procs[name].poll() is None for name in ("receiver", "worker")}
        entry = chaos_report.add(f"broker_down_30s[{size}]", stack=st, audit=result, recovery_s=converged, events=work.total, accepted=work.accepted_total,
                         broker_down_s=up_at - down_at, broker_restart_s=up_at - down_at - BROKER_DOWN_S, answered=dict(driver.stats.statuses), answered_by_outage_end=during,
                         processes_alive=alive)
        assert driver.stats.statuses.get(503, 0) >= 1, "the receiver never answered 503 while the broker was down"
        assert all(alive.values()), f"a hub process died with the broker: {alive}"
        assert_clean(result, "broker_down", entry)
    finally:
        await close_stack(st)
        await asyncio.to_thread(broker.stop)


@pytest.mark.parametrize("size", [pytest.param(600, id="ci"), pytest.param(10_000, id="long", marks=pytest.mark.chaos)])
async def test_two_workers_one_killed_the_other_takes_over(kafka_bootstrap, tmp_path, chaos_report, size):
    st = await make_stack(kafka_bootstrap, tmp_path, partitions=4, workers=("worker-a", "worker-b"))
    b_ready, b_ready_epoch = time.monotonic(), time.time()
    try:
        work = Workload(size, first_id=8_000_000, run=st.prefix)
        driver = Driver(st.webhook_url, JIRA_SECRET, work, concurrency=24, pace_s=0.1)
        drive = asyncio.create_task(driver.run())
        # both workers must have done real work before one dies: a third of the incidents paged
        third = len(work.incidents) // 3
        while len(st.pagerduty.incidents) < third:
            await asyncio.sleep(0.5)
        members = await group_members(st.bootstrap, f"{st.prefix}switchboard")
        slack_parts = [m.get(st.topic("actions.slack"), []) for m in members]
        kill_epoch = time.time()
        await st.kill("worker-b")
        killed_at = time.monotonic()
        await drive
        result, converged = await settle(lambda: st.audit(work), timeout=240, since=killed_at)
        entry = chaos_report.add(f"two_workers_one_killed[{size}]", stack=st, audit=result,
                         recovery_s=converged, events=work.total, accepted=work.accepted_total, partitions=4,
                         actions_slack_partitions_per_member_before_kill=slack_parts,
                         b_started_s_before_kill=killed_at - b_ready, b_ready_epoch=b_ready_epoch, kill_epoch=kill_epoch)
        assert len(members) == 2 and all(slack_parts), f"both workers must own partitions before the kill: {members}"
        assert_clean(result, "two_workers_one_killed", entry)
    finally:
        await close_stack(st)


@pytest.mark.chaos
@pytest.mark.parametrize("size", [pytest.param(3_000, id="long")])
async def test_three_broker_cluster_one_broker_killed(tmp_path, chaos_report, size):
    cluster = await asyncio.to_thread(_own, LocalCluster(tmp_path / "cluster", log=lambda _m: None))
    st = await make_stack(cluster.bootstrap, tmp_path, extra={"SWITCHBOARD_KAFKA__REPLICATION_FACTOR": "3"})
    try:
        work = Workload(size, first_id=9_000_000, run=st.prefix)
        driver = Driver(st.webhook_url, JIRA_SECRET, work, concurrency=16, pace_s=0.1)
        drive = asyncio.create_task(driver.run())
        while work.accepted_total < work.total // 3 and not drive.done():
            await asyncio.sleep(0.5)
        info = await asyncio.to_thread(__import__("hub.broker", fromlist=["probe_cluster"]).probe_cluster, cluster.bootstrap)
        victim = info.controller_id if info.controller_id in (1, 2, 3) else 2  # the active controller: the hardest one
        await asyncio.to_thread(cluster.kill, victim)
        killed_at = time.monotonic()
        await drive
        result, converged = await settle(lambda: st.audit(work), timeout=300, since=killed_at)
        entry = chaos_report.add(f"three_brokers_one_killed[{size}]", stack=st, audit=result,
                         recovery_s=converged, events=work.total,
                         accepted=work.accepted_total, killed_node=victim, answered=dict(driver.stats.statuses))
        assert_clean(result, "three_brokers_one_killed", entry)
    finally:
        await close_stack(st)
        await asyncio.to_thread(cluster.stop)


@pytest.mark.chaos
@pytest.mark.parametrize("size", [pytest.param(3_000, id="long")])
async def test_two_workers_killed_in_turn(kafka_bootstrap, tmp_path, chaos_report, size):
    """Rebalance after rebalance: one of two workers SIGKILLed and restarted every 5-15 s while the
    other keeps going, until the run has converged (at most 8 kills)."""
    import random

    st = await make_stack(kafka_bootstrap, tmp_path, partitions=4, workers=("worker-a", "worker-b"))
    try:
        rng = random.Random(size)
        work = Workload(size, first_id=8_500_000, run=st.prefix)
        driver = Driver(st.webhook_url, JIRA_SECRET, work, concurrency=24, pace_s=0.05)
        drive = asyncio.create_task(driver.run())
        kills, last = [], time.monotonic()
        while len(kills) < 8:
            await asyncio.sleep(rng.uniform(5.0, 15.0))
            if drive.done() and st.audit(work).counts.lost == 0:
                break
            victim = rng.choice(["worker-a", "worker-b"])
            await st.kill(victim)
            await st.start_worker(victim)
            kills.append(victim)
            last = time.monotonic()
        await drive
        result, converged = await settle(lambda: st.audit(work), timeout=300, since=last)
        entry = chaos_report.add(f"two_workers_killed_in_turn[{size}]", stack=st, audit=result, recovery_s=converged,
                                 events=work.total, accepted=work.accepted_total, partitions=4, kills=kills)
        assert kills, "no worker was killed: the run was too short"
        assert_clean(result, "two_workers_killed_in_turn", entry)
    finally:
        await close_stack(st)
