"""The actions of an alert rule (alerts.py): a webhook (a JSON POST) and e-mail through the SMTP
server the operator configures (the smtp_* settings of the workspace server).

``Notifier.send(rule, entry)`` runs every action of the rule for one fired or resolved history
entry and answers ``[(action, target, error or None)]``; it never raises: a failure is a message
the store keeps in the history (``action_failed``).

The webhook's JSON (``payload()``)::

    {"schemaId": "netatlas.alert.v1", "rule": {"id", "name", "description"}, "severity": 2,
     "severityName": "Sev2", "state": "fired" | "resolved", "dimensions": {...}, "value": 3,
     "condition": {"measure", "aggregation", "operator", "threshold"},
     "window": {"start", "end"}, "evaluatedAt": "...", "query": "...", "link": "<the logs page with the query>"}
"""
from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage
from urllib.parse import quote

TIMEOUT = 10.0          # seconds a webhook or an SMTP exchange may take
SCHEMA = "netatlas.alert.v1"


@dataclass(frozen=True)
class Smtp:
    host: str = ""
    port: int = 25
    sender: str = ""
    to: tuple[str, ...] = ()
    starttls: bool = False
    user: str = ""
    password_file: str = ""          # read at each login, so a changed password needs no restart
    ca_file: str = ""                # PEM certificates trusted for STARTTLS (default: the system's)

    @classmethod
    def from_settings(cls, settings) -> "Smtp":
        return cls(host=settings.smtp_host, port=settings.smtp_port, sender=settings.smtp_from,
                   to=tuple(a.strip() for a in settings.smtp_to.split(",") if a.strip()),
                   starttls=settings.smtp_starttls, user=settings.smtp_user, password_file=settings.smtp_password_file,
                   ca_file=settings.smtp_ca_file)

    def password(self) -> str:
        with open(self.password_file) as f:
            return f.read().strip()


def link(base: str, query: str) -> str:
    """The logs page with ``query`` in its address."""
    return f"{base.rstrip('/')}/#/logs?q={quote(query, safe='')}"


def payload(rule: dict, entry: dict, base: str) -> dict:
    return {"schemaId": SCHEMA,
            "rule": {"id": entry["rule"], "name": rule["name"], "description": rule.get("description", "")},
            "severity": rule["severity"], "severityName": f"Sev{rule['severity']}",
            "state": entry["event"], "dimensions": entry.get("dimensions", {}), "value": entry.get("value"),
            "condition": {k: rule[k] for k in ("measure", "aggregation", "operator", "threshold")},
            "window": entry["window"], "evaluatedAt": entry["at"], "query": rule["query"],
            "link": link(base, rule["query"])}


def describe(data: dict) -> tuple[str, str]:
    """An e-mail's subject and text for a payload."""
    dims = ", ".join(f"{k}={v}" for k, v in data["dimensions"].items())
    subject = f"[netatlas] {data['severityName']} {data['state']}: {data['rule']['name']}" + (f" ({dims})" if dims else "")
    c = data["condition"]
    what = "rows" if c["measure"] is None else f"{c['aggregation']}({c['measure']})"
    lines = [f"Alert rule: {data['rule']['name']} ({data['rule']['id']})",
             f"State: {data['state']} at {data['evaluatedAt']}",
             f"Severity: {data['severityName']}",
             f"Condition: {what} {c['operator']} {c['threshold']}; value {data['value']}",
             f"Window: {data['window']['start']} to {data['window']['end']}"]
    if dims:
        lines.append(f"Dimensions: {dims}")
    lines += ["", "Query:", data["query"], "", f"Open in netatlas: {data['link']}"]
    return subject, "\n".join(lines) + "\n"


@dataclass
class Notifier:
    smtp: Smtp = field(default_factory=Smtp)
    base_url: str = "http://127.0.0.1:8080"
    timeout: float = TIMEOUT

    def send(self, rule: dict, entry: dict) -> list[tuple[str, str, str | None]]:
        data = payload(rule, entry, self.base_url)
        out = []
        for url in rule["actions"].get("webhooks", []):
            out.append(("webhook", url, _guard(self.webhook, url, data)))
        email = rule["actions"].get("email")
        if email:
            to = tuple(email) if isinstance(email, list) else self.smtp.to
            out.append(("email", ",".join(to) or "(smtp_to)", _guard(self.email, to, data)))
        return out

    def webhook(self, url: str, data: dict) -> None:
        body = json.dumps(data, default=str).encode()
        req = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "netatlas-alerts"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:     # noqa: S310 (the admin's URL)
                r.read(64 * 1024)
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"the webhook answered HTTP {e.code}") from None

    def email(self, to: tuple[str, ...], data: dict) -> None:
        s = self.smtp
        if not s.host:
            raise RuntimeError("no SMTP server is configured (the smtp_host setting)")
        if not to:
            raise RuntimeError("no recipient: the rule's email is true and the smtp_to setting is empty")
        subject, text = describe(data)
        msg = EmailMessage()
        msg["Subject"], msg["From"], msg["To"] = subject, s.sender or f"netatlas@{s.host}", ", ".join(to)
        msg.set_content(text)
        with smtplib.SMTP(s.host, s.port, timeout=self.timeout) as smtp:
            if s.starttls:
                smtp.starttls(context=ssl.create_default_context(cafile=s.ca_file or None))
            if s.user:
                smtp.login(s.user, s.password())
            smtp.send_message(msg)


def _guard(fn, target, data) -> str | None:
    """Run one action; its failure as a message (never an exception)."""
    try:
        fn(target, data)
        return None
    except Exception as e:      # noqa: BLE001: an action's failure is recorded, never raised
        return f"{type(e).__name__}: {e}"
