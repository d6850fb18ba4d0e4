"""Alert emails through an SMTP server, with the standard library's smtplib.

`SmtpSender.send` raises `SendFailed` with a message a person can act on, never holding the password.
"""

from __future__ import annotations

import email.policy
import smtplib
import socket
import ssl
from collections.abc import Callable
from contextlib import suppress
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING

from tui_currents.alerts.records import Alert
from tui_currents.config import LOOPBACK_HOSTS, Config, SmtpSettings
from tui_currents.logs import mask

if TYPE_CHECKING:
    from tui_currents.secrets import Secrets

MAX_QUOTED_ERROR_CHARS = 300
# No folding of long subjects (the default policy folds some of them before their first word).
EMAIL_POLICY = email.policy.SMTP.clone(max_line_length=998)


class SendFailed(Exception):
    """An alert email could not be sent. The message says why in plain words and never holds a password.

    `affects_all`: the server cannot be used at all right now (unreachable, login refused), so the other
    pending emails are not tried in this round either.
    """

    def __init__(self, message: str, *, affects_all: bool):
        super().__init__(message)
        self.affects_all = affects_all


class SmtpSender:
    """Sends alert emails through the configured SMTP server with the standard library's smtplib.

    `password_provider` is asked for the password at each send (so a changed password is picked up), only
    when a user name is configured. `ssl_context` defaults to the system's trusted certificates with host
    name checks; tests pass one that trusts their own certificate.
    """

    def __init__(
        self,
        settings: SmtpSettings,
        password_provider: Callable[[], str | None] | None = None,
        *,
        timeout: float = 20.0,
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.settings = settings
        self._password_provider = password_provider
        self.timeout = timeout
        self._ssl_context = ssl_context

    def __repr__(self) -> str:
        s = self.settings
        return f"<SmtpSender {s.host}:{s.port} {s.security} user={s.username!r}>"

    @property
    def server(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()

    def send_alert(self, alert: Alert) -> None:
        """Email a recorded alert to its recipient. Raises SendFailed."""
        self.send(email_message(alert, self.settings))

    def send(self, message: EmailMessage) -> None:
        """Send one email (one connection each). Raises SendFailed with a message a person can act on."""
        s = self.settings
        password = None
        try:
            if s.username:
                if s.security == "none" and s.host not in LOOPBACK_HOSTS:
                    raise SendFailed(
                        f"refusing to send the SMTP password unencrypted to {s.host}; set [smtp] security "
                        "to 'starttls' or 'ssl' in the config",
                        affects_all=True,
                    )
                password = self._password()
            client = self._connect()
            try:
                if s.username:
                    client.login(s.username, password or "")
                client.send_message(message)
            finally:
                with suppress(smtplib.SMTPException, OSError):
                    client.quit()
                client.close()
        except SendFailed:
            raise
        except Exception as exc:
            raise SendFailed(_scrub(self._explain(exc), password), affects_all=_affects_all(exc)) from None

    def _password(self) -> str:
        if self._password_provider is None:
            raise SendFailed(
                "an SMTP user name is set but no SMTP password can be read; store the SMTP password in "
                "the keyring, or remove [smtp] username if the server needs no login",
                affects_all=True,
            )
        try:
            password = self._password_provider()
        except Exception as exc:  # the keyring's own message could be long; its type is enough here
            raise SendFailed(
                f"the SMTP password could not be read from the keyring ({type(exc).__name__}); check that "
                "the keyring is available to this program",
                affects_all=True,
            ) from None
        if not password:
            raise SendFailed(
                f"[smtp] username is {self.settings.username!r} but no SMTP password is stored in the "
                "keyring; store it, or remove the username if the server needs no login",
                affects_all=True,
            )
        return password

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if s.security == "ssl":
            return smtplib.SMTP_SSL(s.host, s.port, timeout=self.timeout, context=self._context())
        client = smtplib.SMTP(s.host, s.port, timeout=self.timeout)
        try:
            if s.security == "starttls":
                client.ehlo()
                if not client.has_extn("starttls"):
                    raise SendFailed(
                        f"the SMTP server {self.server} does not offer STARTTLS; set [smtp] security to "
                        "'ssl' if it expects TLS from the start (usually port 465)",
                        affects_all=True,
                    )
                client.starttls(context=self._context())
                client.ehlo()
        except BaseException:
            client.close()
            raise
        return client

    def _explain(self, exc: Exception) -> str:
        server = self.server
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return (
                f"the SMTP server {server} refused the login of {self.settings.username!r} "
                f"({_reply(exc.smtp_code, exc.smtp_error)}); check [smtp] username and the SMTP password "
                "stored in the keyring"
            )
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            refused = "; ".join(f"{who}: {_reply(*answer)}" for who, answer in exc.recipients.items())
            return f"the SMTP server {server} refused the recipient ({refused}); check the contact email"
        if isinstance(exc, smtplib.SMTPSenderRefused):
            return (
                f"the SMTP server {server} refused the sender {self.settings.from_address!r} "
                f"({_reply(exc.smtp_code, exc.smtp_error)}); check [smtp] from_address"
            )
        if isinstance(exc, smtplib.SMTPResponseException):
            return f"the SMTP server {server} answered {_reply(exc.smtp_code, exc.smtp_error)}"
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return f"the SMTP server {server} does not support a needed feature ({exc})"
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return f"the SMTP server {server} closed the connection unexpectedly"
        if isinstance(exc, smtplib.SMTPException):
            return f"the SMTP server {server} failed: {exc}"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return (
                f"the SMTP server {server}'s TLS certificate was not accepted "
                f"({exc.verify_message or exc.reason}); check [smtp] host"
            )
        if isinstance(exc, ssl.SSLError):
            return (
                f"TLS with the SMTP server {server} failed ({exc.reason or type(exc).__name__}); check "
                "[smtp] security: 'ssl' for servers that expect TLS at once (465), 'starttls' otherwise"
            )
        if isinstance(exc, TimeoutError | socket.timeout):
            return f"the SMTP server {server} did not answer within {self.timeout:g} s"
        if isinstance(exc, socket.gaierror):
            return (
                f"the SMTP server's host name {self.settings.host!r} could not be resolved; check [smtp] host"
            )
        if isinstance(exc, OSError):
            why = exc.strerror or type(exc).__name__
            return f"could not reach the SMTP server {server} ({why}); check [smtp] host and port"
        return f"sending through the SMTP server {server} failed ({type(exc).__name__})"


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(str(text).split())}"[:MAX_QUOTED_ERROR_CHARS]


def _affects_all(exc: Exception) -> bool:
    # A refused recipient or message concerns that email only; anything else means the server is unusable.
    return not isinstance(exc, smtplib.SMTPRecipientsRefused | smtplib.SMTPDataError)


def _scrub(text: str, password: str | None) -> str:
    if password:
        text = text.replace(password, "[secret]")
    return mask(text)


def smtp_sender_for(config: Config, secrets: Secrets | None) -> SmtpSender | None:
    """The sender for a config's [smtp] settings (the password read from `secrets` at each send), or None
    when no SMTP server is configured."""
    if config.smtp is None:
        return None
    return SmtpSender(config.smtp, secrets.get_smtp_password if secrets is not None else None)


def email_message(alert: Alert, settings: SmtpSettings) -> EmailMessage:
    """The email of a recorded alert, from the configured sender address to the alert's recipient."""
    message = EmailMessage(policy=EMAIL_POLICY)
    message["Subject"] = alert.subject
    message["From"] = settings.from_address
    message["To"] = alert.recipient or ""
    message["Date"] = formatdate(alert.at, localtime=False)
    domain = settings.from_address.rpartition("@")[2] or None
    message["Message-ID"] = make_msgid(f"tui-currents.alert{alert.id}", domain=domain)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: vacation responders stay quiet
    message.set_content(alert.body)
    return message
