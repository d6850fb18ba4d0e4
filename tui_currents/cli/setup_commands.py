"""`tui-currents smtp|service|alerts ...`: where alerts go, and the systemd unit of the service."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tui_currents import config
from tui_currents.cli.common import (
    Subparsers,
    UsageError,
    home_of,
    notify_engine,
    open_secrets,
    read_secret_from_stdin,
)


def cmd_smtp(args: argparse.Namespace) -> int:
    home = home_of(args)
    secrets = open_secrets(home, interactive=False)
    if args.action == "password":
        secrets.set_smtp_password(read_secret_from_stdin("SMTP password"))
        print("SMTP password stored in the keyring.")
    else:
        secrets.delete_smtp_password()
        print("SMTP password removed from the keyring.")
    return 0


def cmd_service(args: argparse.Namespace) -> int:
    from tui_currents.service_unit import render

    home = home_of(args).ensure()  # ReadWritePaths= must exist when the service starts
    credential = Path(args.passphrase_file).absolute() if args.passphrase_file else None
    sys.stdout.write(render(home, user=args.user, credential=credential))
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    from tui_currents.webhook import check_webhook_url

    home = home_of(args)
    if args.action == "webhook":
        url = read_secret_from_stdin("webhook URL")
        if problem := check_webhook_url(url):
            raise UsageError(f"webhook URL: {problem}")
        open_secrets(home, interactive=False).set_webhook_url(url)
        config.set_webhook(home, True)
        print("Alert webhook stored in the keyring and turned on ([alerts] webhook = true).")
    else:
        config.set_webhook(home, False)
        open_secrets(home, interactive=False).delete_webhook_url()
        print("Alert webhook URL removed from the keyring and turned off.")
    notify_engine(home)
    return 0


def register(sub: Subparsers) -> None:
    """Add `smtp`, `service` and `alerts`."""
    smtp = sub.add_parser("smtp", help="the SMTP password for alert emails (settings are in [smtp])")
    smtp_sub = smtp.add_subparsers(dest="action", required=True, metavar="ACTION")
    smtp_sub.add_parser("password", help="store the SMTP password, read from stdin")
    smtp_sub.add_parser("forget-password", help="remove the stored SMTP password")
    smtp.set_defaults(func=cmd_smtp)

    service = sub.add_parser("service", help="run tui-currents as a systemd service")
    service_sub = service.add_subparsers(dest="action", required=True, metavar="ACTION")
    unit = service_sub.add_parser(
        "unit", help="print a systemd unit (Type=notify) for this installation and home"
    )
    unit.add_argument(
        "--user", action="store_true", help="a user unit (systemctl --user) rather than a system one"
    )
    unit.add_argument(
        "--passphrase-file", help="where systemd reads the keyring passphrase from (LoadCredential=)"
    )
    service.set_defaults(func=cmd_service)

    alerts = sub.add_parser("alerts", help="where alerts go besides e-mail (settings are in [alerts])")
    alerts_sub = alerts.add_subparsers(dest="action", required=True, metavar="ACTION")
    alerts_sub.add_parser("webhook", help="store the alert webhook's URL, read from stdin, and turn it on")
    alerts_sub.add_parser("forget-webhook", help="remove the stored webhook URL and turn the webhook off")
    alerts.set_defaults(func=cmd_alerts)
