"""`tui-currents cluster status [--json]`: the instances with their heartbeat, the queue stream with its
replicas, leader and lagging replicas, and each connector's waiting / in flight / redelivered. The command
runs in this process (the CLI's main): the tests are about what it prints."""

from __future__ import annotations

import json
import os
import subprocess
import time

from tests.cluster.conftest import NatsCluster, member_config
from tests.cluster.test_jetstream_outbox import C1, batch, eventually, lease_all
from tests.support import cli_in_process
from tui_currents.cluster import JetStreamOutbox
from tui_currents.outbox_home import open_outbox
from tui_currents.paths import Home


def cli(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    return cli_in_process(home.root, *args)


def status_json(home: Home) -> dict:
    result = cli(home, "cluster", "status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_cluster_status_shows_instances_stream_and_consumers(
    home: Home, nats_cluster: NatsCluster, queue_name: str
):
    member_config(home.root, nats_cluster.urls, queue_name)
    home.lock_file.write_text(str(os.getpid()))  # this process stands for the home's engine
    engine = open_outbox(home)
    assert isinstance(engine, JetStreamOutbox) and engine.presence
    try:
        engine.announce(receiver="http://127.0.0.1:8787")
        for _ in range(3):
            engine.commit(batch(10)[0], source="test")
        leased = lease_all(engine, max_messages=10)  # one batch message in flight
        assert len(leased) == 10
        assert eventually(lambda: engine._instances.get(engine.instance, {}).get("address") is not None)

        status = status_json(home)
        (me,) = status["instances"]
        assert me["instance"] == engine.instance and me["this_home"] is True
        assert (me["state"], me["address"], me["pid"]) == ("running", "http://127.0.0.1:8787", os.getpid())
        assert me["seconds_since_heartbeat"] < 5 and me["version"]
        stream = status["stream"]
        assert stream["replicas"] == 3 and stream["messages"] == 3 and stream["bytes"] > 0
        assert stream["leader"] in {node.name for node in nats_cluster.nodes}
        assert stream["lagging"] == []
        assert status["connectors"][C1] == {"waiting": 2, "in_flight": 1, "redelivered": 0}

        text = cli(home, "cluster", "status")
        assert text.returncode == 0, text.stderr
        assert f"{engine.instance} (this home): running, receiver http://127.0.0.1:8787" in text.stdout
        assert f"{C1}: 2 waiting, 1 in flight, 0 redelivered" in text.stdout

        follower = next(i for i, n in enumerate(nats_cluster.nodes) if n.name != stream["leader"])
        nats_cluster.kill(follower)
        deadline = time.monotonic() + 20
        while True:  # the leader notices a replica gone within seconds (a new meta leader may be elected)
            result = cli(home, "cluster", "status", "--json")
            if result.returncode == 0:
                status = json.loads(result.stdout)
                if nats_cluster.nodes[follower].name in status["stream"]["lagging"]:
                    break
            assert time.monotonic() < deadline, status["stream"]
            time.sleep(0.2)
        engine.delivered(C1, [r.seq for r in leased])
    finally:
        engine.close()
    status = status_json(home)
    assert status["instances"][0]["state"] == "stopped" and status["running_instances"] == 0


def test_cluster_status_on_a_home_outside_any_cluster_says_so(home: Home):
    result = cli(home, "cluster", "status")
    assert result.returncode == 2
    assert "not a member of a cluster" in result.stderr and "Traceback" not in result.stderr
