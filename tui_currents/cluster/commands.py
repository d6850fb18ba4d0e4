"""`tui-currents cluster init | join | leave | status`: the commands' arguments (the work is in enrolment.py,
imported only when a `cluster` command runs: the NATS client is slow to import for every other command)."""

from __future__ import annotations

import argparse
from typing import Any

from tui_currents.secrets import CLUSTER_PASSPHRASE_ENV


def add_cluster_parser(subparsers: Any) -> None:
    """Add `cluster init | join | leave | status` to the CLI's subcommands."""
    cluster = subparsers.add_parser(
        "cluster", help="run several instances on one NATS JetStream cluster (queue and configuration)"
    )
    actions = cluster.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = actions.add_parser(
        "init", help="create the cluster and carry this home's configuration, secrets and queue into it"
    )
    join = actions.add_parser("join", help="make this home a member of an initialised cluster")
    for parser in (init, join):
        parser.add_argument("--nats", required=True, help="NATS server URLs, comma-separated")
        parser.add_argument("--creds", help="NATS user credentials file (absolute path)")
        parser.add_argument("--tls-ca", help="CA certificate to trust for tls:// servers (absolute path)")
        parser.add_argument("--name", default="tc", help="prefix of the cluster's JetStream assets (tc)")
        parser.add_argument(
            "--passphrase-stdin",
            action="store_true",
            help=f"read the cluster passphrase from stdin (else {CLUSTER_PASSPHRASE_ENV})",
        )
    init.add_argument("--replicas", type=int, default=3, help="copies of every stream and bucket (3)")
    actions.add_parser("leave", help="make this home a single box again, with the configuration it has")
    status = actions.add_parser(
        "status", help="instances and their heartbeats, the queue stream and its replicas, per connector"
    )
    status.add_argument("--json", action="store_true")
    cluster.set_defaults(func=cmd_cluster)


def cmd_cluster(args: argparse.Namespace) -> int:
    """Run one `cluster` action; prints one line per failure and returns the exit code."""
    from tui_currents.cluster.enrolment import run_action

    return run_action(args)
