"""Generate the log-severity dataset of the ``log-severity`` task (plugin gemmapipe-logs), reproducibly.

    python recipes/make_log_severity_data.py --out recipes/log-severity

writes ``train.jsonl`` and ``test.jsonl`` of ``{"text": <one log line>, "expected": {"severity": ...}}`` records, the
severity one of debug, info, notice, warning, error, critical (syslog's levels; alert and emergency count as critical).

Lines come in the formats log pipelines meet: BSD syslog (no level: the message alone tells), RFC 5424 syslog (the
level is coded in ``<PRI>``, facility * 8 + severity), Python logging, log4j/Spring, JSON, logfmt, nginx's error log,
Kubernetes' klog (``I``/``W``/``E``/``F``), PostgreSQL, and nginx access lines (by status: 1xx-3xx info, 4xx warning,
5xx error). Where a line carries a level, the label is that level as its own software maps it to syslog (log4j and
logfmt ``fatal``, klog ``F`` and PostgreSQL ``PANIC`` are critical; PostgreSQL ``FATAL``, which ends one session, is
error, as PostgreSQL itself logs it to syslog). Where it does not, the label is the one a system administrator would
give the event (``Out of memory: Killed process`` critical, ``Failed password`` warning, ``Started ...`` info); the
message pools below are that judgement, written down.

The test split is held out: a quarter of the messages of each severity, the Apache error-log format and half of the
host names occur only in test, so its score measures unseen wording and an unseen format. The output depends only on
``--seed``, so the committed files can be checked against a fresh run.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SEVERITIES = ["debug", "info", "notice", "warning", "error", "critical"]
SYSLOG_CODE = {"debug": 7, "info": 6, "notice": 5, "warning": 4, "error": 3, "critical": 2}

HOSTS = ["web-01", "web-02", "db-primary", "db-replica-2", "cache-3", "build-agent-7", "edge-lb", "k8s-node-4",
         "mail-gw", "vpn-01", "ci-runner-12", "api-eu-1", "backup-nas", "worker-5", "gateway", "ingest-9"]
USERS = ["root", "deploy", "alice", "bob", "postgres", "www-data", "admin", "jenkins", "ubuntu", "git", "svc-backup", "maria"]
SERVICES = ["nginx", "postgresql", "redis-server", "docker", "sshd", "cron", "grafana-server", "kubelet", "haproxy", "rsyslog"]
MODULES = ["app.worker", "app.api.orders", "billing.invoices", "auth.session", "sync.scheduler", "ingest.kafka", "core.cache"]
JAVA_CLASSES = ["o.s.b.w.embedded.tomcat.TomcatWebServer", "c.acme.orders.OrderService", "o.h.engine.jdbc.spi.SqlExceptionHelper",
                "c.acme.auth.TokenFilter", "o.a.k.clients.consumer.KafkaConsumer", "c.z.hikari.pool.HikariPool"]
PATHS = ["/api/v1/orders", "/login", "/static/app.js", "/api/v2/users/42", "/healthz", "/checkout", "/admin", "/metrics",
         "/wp-login.php", "/api/v1/search?q=shoes", "/favicon.ico", "/api/v1/payments"]
DOMAINS = ["shop.example.com", "api.example.org", "mail.example.net", "grafana.internal", "auth.example.io"]
TABLES = ["orders", "users", "payments", "sessions", "invoices", "events"]
DISKS = ["sda", "sdb", "nvme0n1", "vdb", "sdc"]


class Values:
    """Random field values for message templates (``{ip}``, ``{user}``, ...), drawn from one split's pools."""

    def __init__(self, rng: random.Random, hosts: list[str]) -> None:
        self.rng, self.hosts = rng, hosts

    def fill(self, template: str) -> str:
        r = self.rng
        values = {
            "ip": f"{r.choice([10, 172, 192, 203, 81])}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}",
            "user": r.choice(USERS), "host": r.choice(self.hosts), "svc": r.choice(SERVICES), "path": r.choice(PATHS),
            "domain": r.choice(DOMAINS), "table": r.choice(TABLES), "disk": r.choice(DISKS), "module": r.choice(MODULES),
            "port": r.randint(1024, 65535), "pid": r.randint(200, 65000), "n": r.randint(2, 9999), "ms": r.randint(1, 30000),
            "pct": r.randint(81, 99), "low": r.randint(1, 60), "days": r.randint(1, 14), "k": r.randint(1, 5),
            "sector": r.randint(100000, 99999999), "uid": r.choice([0, 33, 1000, 1001, 999]), "hex": f"{r.getrandbits(32):08x}",
            "temp": r.randint(85, 105), "load": f"{r.uniform(8, 64):.2f}", "mb": r.randint(100, 16000), "id": r.randint(1, 999999),
        }
        return template.format(**values)


@dataclass(frozen=True)
class Message:
    """A message template, the program that writes it and its family (which line formats it appears in)."""

    family: str  # "system" (daemons, kernel), "web" (nginx), "db" (PostgreSQL) or "app" (an application's own log)
    program: str
    template: str


def _m(family: str, program: str, *templates: str) -> list[Message]:
    return [Message(family, program, t) for t in templates]


MESSAGES: dict[str, list[Message]] = {
    "debug": [
        *_m("app", "app", "cache lookup key=user:{id} hit=true", "entering retry loop for job {id}", "SQL: SELECT * FROM {table} WHERE id = {id} ({ms} us)",
            "parsed request headers: 14 fields, content-length={n}", "token refresh skipped: {low}s until expiry", "loaded {n} feature flags from config",
            "acquired lock {table}:{id} after {ms} us", "payload: {{\"id\": {id}, \"items\": {k}}}"),
        *_m("web", "nginx", "*{n} http keepalive handler", "*{n} http upstream request: \"{path}\"", "*{n} free: 0000{hex}, unused: 0"),
        *_m("db", "postgres", "StartTransaction(1) name: unnamed; blockState: DEFAULT", "autovacuum: processing database \"app\"",
            "name: unnamed; blockState: STARTED; state: INPROGRESS"),
        *_m("system", "dhclient", "DHCPREQUEST for {ip} on eth0 to {ip} port 67"),
        *_m("system", "systemd", "Sent message type=signal sender=n/a destination=n/a path=/org/freedesktop/systemd1"),
    ],
    "info": [
        *_m("system", "systemd", "Started Session {n} of User {user}.", "Reloaded {svc}.service.", "Created slice User Slice of UID {uid}.",
            "Starting Daily apt download activities...", "Finished Rotate log files."),
        *_m("system", "sshd", "Accepted publickey for {user} from {ip} port {port} ssh2", "Disconnected from user {user} {ip} port {port}"),
        *_m("system", "kernel", "usb 1-{k}: new high-speed USB device number {k} using xhci_hcd", "EXT4-fs ({disk}1): mounted filesystem with ordered data mode"),
        *_m("system", "CRON", "({user}) CMD (run-parts /etc/cron.hourly)", "({user}) CMD (/usr/local/bin/backup.sh > /dev/null 2>&1)"),
        *_m("app", "app", "server listening on 0.0.0.0:{port}", "user {user} logged in", "job {id} finished in {ms} ms",
            "processed batch of {n} events", "order {id} created", "scheduled {k} tasks for the next run", "connected to redis at {ip}:6379",
            "health check ok ({ms} ms)"),
        *_m("db", "postgres", "checkpoint complete: wrote {n} buffers (1.2%); 0 WAL file(s) added", "database system is ready to accept connections", "received SIGHUP, reloading configuration files",
            "automatic vacuum of table \"app.public.{table}\": index scans: 1"),
        *_m("web", "nginx", "*{n} client {ip} closed keepalive connection", "*{n} client timed out (110: Connection timed out) while waiting for request"),
    ],
    "notice": [
        *_m("system", "kernel", "Linux version 6.8.0-{low}-generic (buildd@lcy02) #52-Ubuntu SMP", "audit: type=1400 apparmor=\"DENIED\" operation=\"open\" profile=\"{svc}\""),
        *_m("system", "sudo", "{user} : TTY=pts/0 ; PWD=/home/{user} ; USER=root ; COMMAND=/bin/systemctl restart {svc}",
            "pam_unix(sudo:session): session opened for user root(uid=0) by {user}(uid={uid})"),
        *_m("system", "systemd-timesyncd", "Initial clock synchronization to Sat 2026-11-28 03:12:01.123 UTC."),
        *_m("system", "chronyd", "System clock wrong by {low}.{k} seconds, adjustment started"),
        *_m("web", "nginx", "signal process started", "gracefully shutting down", "reconfiguring", "start worker process {pid}", "using the \"epoll\" event method"),
        *_m("db", "postgres", "relation \"{table}\" already exists, skipping", "table \"{table}_tmp\" does not exist, skipping",
            "drop cascades to {k} other objects"),
        *_m("app", "app", "configuration reloaded from /etc/app/config.yaml", "new release v2.{low}.{k} deployed by {user}",
            "maintenance mode enabled by {user}", "feature flag new-checkout turned on for {pct}% of users"),
    ],
    "warning": [
        *_m("system", "sshd", "Failed password for invalid user {user} from {ip} port {port} ssh2", "Invalid user {user} from {ip} port {port}",
            "Connection closed by authenticating user {user} {ip} port {port} [preauth]"),
        *_m("system", "kernel", "CPU{k}: Core temperature above threshold, cpu clock throttled", "TCP: request_sock_TCP: Possible SYN flooding on port 443. Sending cookies."),
        *_m("system", "smartd", "Device: /dev/{disk} [SAT], {k} Currently unreadable (pending) sectors"),
        *_m("app", "app", "disk usage at {pct}% on /var", "slow request: {path} took {ms} ms", "retrying connection to {host} (attempt {k}/5)",
            "certificate for {domain} expires in {days} days", "deprecated option 'workers' in config; use 'worker_count'",
            "memory usage high: {pct}% of limit", "queue depth {n} above soft limit 1000", "rate limit reached for client {ip}",
            "response from {domain} missing field 'currency', assuming EUR"),
        *_m("db", "postgres", "there is no transaction in progress", "database \"app\" must be vacuumed within {n}000 transactions",
            "skipping vacuum of \"{table}\" --- lock not available", "oldest xmin is far in the past"),
        *_m("web", "nginx", "*{n} an upstream response is buffered to a temporary file /var/cache/nginx/proxy_temp/{k}/00/{id}",
            "*{n} a client request body is buffered to a temporary file /var/cache/nginx/client_temp/00000{k}"),
    ],
    "error": [
        *_m("web", "nginx", "*{n} connect() failed (111: Connection refused) while connecting to upstream, client: {ip}, request: \"GET {path} HTTP/1.1\"",
            "*{n} upstream timed out (110: Connection timed out) while reading response header from upstream, client: {ip}",
            "*{n} open() \"/var/www/html{path}\" failed (2: No such file or directory), client: {ip}"),
        *_m("system", "sshd", "error: maximum authentication attempts exceeded for {user} from {ip} port {port} ssh2 [preauth]"),
        *_m("system", "systemd", "Failed to start {svc}.service - {svc} daemon.", "{svc}.service: Main process exited, code=exited, status=1/FAILURE"),
        *_m("system", "kernel", "blk_update_request: I/O error, dev {disk}, sector {sector} op 0x0:(READ)", "{svc}[{pid}]: segfault at 0 ip 0000{hex} sp 00007ffd error 4"),
        *_m("db", "postgres", "duplicate key value violates unique constraint \"{table}_pkey\"", "relation \"{table}_archive\" does not exist at character {low}",
            "password authentication failed for user \"{user}\"", "canceling statement due to statement timeout"),
        *_m("app", "app", "request to {domain} failed: timeout after {low}s", "unhandled exception in worker: KeyError: 'customer_id'",
            "could not write /var/lib/app/state.json: No space left on device", "payment {id} failed: card declined by processor",
            "failed to send email to {user}@example.com: SMTP 550", "job {id} failed after {k} attempts", "cannot parse message {id}: invalid JSON at offset {n}"),
    ],
    "critical": [
        *_m("system", "kernel", "Out of memory: Killed process {pid} ({svc}) total-vm:{mb}000kB", "Kernel panic - not syncing: Fatal exception in interrupt",
            "EXT4-fs error (device {disk}1): ext4_journal_check_start: Detected aborted journal; remounting filesystem read-only",
            "md/raid1:md0: Disk failure on {disk}1, disabling device."),
        *_m("system", "mdadm", "DegradedArray event detected on md device /dev/md0"),
        *_m("db", "postgres", "could not write to file \"pg_wal/xlogtemp.{pid}\": No space left on device", "WAL contains references to invalid pages",
            "could not locate a valid checkpoint record"),
        *_m("app", "app", "all {k} database replicas unreachable; service unavailable", "data corruption detected in segment {id}; refusing writes",
            "master key missing: cannot decrypt secrets, shutting down", "out of memory: cannot allocate {mb} MB, aborting",
            "license expired: all API requests rejected"),
        *_m("web", "nginx", "*{n} SSL_do_handshake() failed (SSL: error:0A000086:certificate verify failed) while SSL handshaking to upstream",
            "worker process {pid} exited on signal 11 (core dumped)"),
    ],
}

#: Every fourth message of each severity (1st, 5th, ...) is held out: it appears only in the test split.
TEST_ONLY_EVERY = 4


def _split_messages() -> tuple[dict[str, list[Message]], dict[str, list[Message]]]:
    train = {s: [m for i, m in enumerate(ms) if i % TEST_ONLY_EVERY != 0] for s, ms in MESSAGES.items()}
    return train, MESSAGES


# --- line formats: each takes (rng, values, message, severity) and returns the line and its fields (see
# :func:`fields`), or None for a severity it cannot express (Python logging has no NOTICE, klog no DEBUG or NOTICE,
# ...). The random draws are made in the order the lines were first written with, so the files stay the same.
Line = tuple[str, dict[str, object]]
Format = Callable[[random.Random, Values, Message, str], "Line | None"]

_CLIENT_IP = re.compile(r"(?:\bfrom|\bclient:?|\buser \S+) (\d{1,3}(?:\.\d{1,3}){3})\b")
_REQUEST = re.compile(r'request: "([A-Z]+) (\S+) HTTP/[\d.]+"')


def fields(timestamp: str | None, message: str, host: str | None = None, program: str | None = None) -> dict[str, object]:
    """The ``logline`` fields of a line, as written in it (None where the line does not say).

    ``client_ip`` is the address a message names as its peer (``from 1.2.3.4``, ``client: 1.2.3.4``, ``user bob
    1.2.3.4``); ``method`` and ``path`` come from a request the message quotes (nginx's ``request: "GET /x HTTP/1.1"``).
    Access lines set their own (:func:`access_line`).
    """
    client = _CLIENT_IP.search(message)
    request = _REQUEST.search(message)
    return {"timestamp": timestamp, "host": host, "program": program, "client_ip": client.group(1) if client else None,
            "method": request.group(1) if request else None, "path": request.group(2) if request else None,
            "status": None, "bytes": None, "message": message}


def _clock(r: random.Random) -> tuple[int, int, int, int, int]:
    return r.randint(1, 28), r.randint(0, 23), r.randint(0, 59), r.randint(0, 59), r.randint(0, 999)


def _pid(r: random.Random, message: Message) -> str:
    return "" if message.program == "kernel" else f"[{r.randint(200, 65000)}]"


def bsd_syslog(r: random.Random, v: Values, m: Message, severity: str) -> Line | None:
    d, hh, mm, ss, _ = _clock(r)
    text = v.fill(m.template)
    stamp, host = f"Nov {d:2d} {hh:02d}:{mm:02d}:{ss:02d}", v.rng.choice(v.hosts)
    return f"{stamp} {host} {m.program}{_pid(r, m)}: {text}", fields(stamp, text, host, m.program)


def rfc5424(r: random.Random, v: Values, m: Message, severity: str) -> Line | None:
    facility = r.choice([0 if m.program == "kernel" else 3, 1, 4 if m.program in ("sshd", "sudo") else 16])
    d, hh, mm, ss, ms = _clock(r)
    stamp, host, pid = f"2026-11-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}.{ms:03d}Z", v.rng.choice(v.hosts), r.randint(200, 65000)
    text = v.fill(m.template)
    return f"<{facility * 8 + SYSLOG_CODE[severity]}>1 {stamp} {host} {m.program} {pid} - - {text}", fields(stamp, text, host, m.program)


def python_logging(r: random.Random, v: Values, m: Message, severity: str) -> Line | None:
    level = {"debug": "DEBUG", "info": "INFO", "warning": "WARNING", "error": "ERROR", "critical": "CRITICAL"}.get(severity)
    if level is None:
        return None
    d, hh, mm, ss, ms = _clock(r)
    stamp = f"2026-11-{d:02d} {hh:02d}:{mm:02d}:{ss:02d},{ms:03d}"
    variants = []  # all three are drawn, then one is chosen
    for layout in ("dashes", "colons", "brackets"):
        logger, text = v.fill("{module}"), v.fill(m.template)
        if layout == "dashes":
            variants.append((f"{stamp} - {logger} - {level} - {text}", fields(stamp, text, program=logger)))
        elif layout == "colons":
            variants.append((f"{level}:{logger}:{text}", fields(None, text, program=logger)))
        else:
            short = logger.rsplit(".", 1)[-1]
            variants.append((f"[{stamp}] {level} in {short}: {text}", fields(stamp, text, program=short)))
    return r.choice(variants)


def log4j(r: random.Random, v: Values, m: Message, severity: str) -> Line | None:
    level = {"debug": "DEBUG", "info": "INFO", "warning": "WARN", "error": "ERROR", "critical": "FATAL"}.get(severity)
    if level is None:
        return None
    d, hh, mm, ss, ms = _clock(r)
    stamp = f"2026-11-{d:02d} {hh:02d}:{mm:02d}:{ss:02d}.{ms:03d}"
    pid, thread, logger = r.randint(1, 9999), r.choice(["main", "http-nio-8080-exec-3", "scheduling-1", "kafka-consumer-2"]), r.choice(JAVA_CLASSES)
    text = v.fill(m.template)
    return f"{stamp} {level:>5} {pid} --- [{thread}] {logger} : {text}", fields(stamp, text, program=logger)


def json_line(r: random.Random, v: Values, m: Message, severity: str) -> Line | None:
    level = r.choice({"debug": ["debug", "DEBUG"], "info": ["info", "INFO"], "notice": ["notice"], "warning": ["warn", "warning", "WARN"],
                      "error": ["error", "ERROR", "err"], "critical": ["fatal", "critical", "crit", "emerg"]}[severity])
    d, hh, mm, ss, ms = _clock(r)
    record = {"ts": f"2026-11-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}.{ms:03d}Z", "level": level, "msg": v.fill(m.template),
              "service": m.program if m.program != "app" else v.fill("{module}").split(".")[0]}
    if r.random() < 0.5:
        record["host"] = v.rng.choice(v.hosts)
    return json.dumps(record), fields(record["ts"], record["msg"], record.get("host"), record["service"])


def logfmt(r: random.Random, v: Values, m: Message, severity: str) -> Line | None:
    level = {"debug": "debug", "info": "info", "warning": "warn", "error": "error", "critical": "fatal"}.get(severity)
    if level is None:
        return None
    d, hh, mm, ss, _ = _clock(r)
    stamp, text = f"2026-11-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}Z", v.fill(m.template)
    component = v.fill("{module}").split(".")[-1]
    return f'time="{stamp}" level={level} msg="{text}" component={component}', fields(stamp, text, program=component)


def klog(r: random.Random, v: Values, m: Message, severity: str) -> Line | None:
    letter = {"info": "I", "warning": "W", "error": "E", "critical": "F"}.get(severity)
    if letter is None:
        return None
    d, hh, mm, ss, _ = _clock(r)
    stamp = f"11{d:02d} {hh:02d}:{mm:02d}:{ss:02d}.{r.randint(0, 999999):06d}"
    thread, source = r.randint(1, 99), f"{r.choice(['reflector.go', 'controller.go', 'kubelet.go', 'server.go'])}:{r.randint(40, 900)}"
    text = v.fill(m.template)
    return f"{letter}{stamp}    {thread} {source}] {text}", fields(stamp, text)


def nginx_error(r: random.Random, v: Values, m: Message, severity: str) -> Line | None:
    level = r.choice({"debug": ["debug"], "info": ["info"], "notice": ["notice"], "warning": ["warn"], "error": ["error"],
                      "critical": ["crit", "alert", "emerg"]}[severity])
    d, hh, mm, ss, _ = _clock(r)
    pid = r.randint(200, 65000)
    stamp, text = f"2026/11/{d:02d} {hh:02d}:{mm:02d}:{ss:02d}", v.fill(m.template)
    return f"{stamp} [{level}] {pid}#{pid}: {text}", fields(stamp, text)


def apache_error(r: random.Random, v: Values, m: Message, severity: str) -> Line | None:  # test split only
    level = {"debug": "debug", "info": "info", "notice": "notice", "warning": "warn", "error": "error", "critical": "crit"}[severity]
    d, hh, mm, ss, _ = _clock(r)
    stamp = f"Sat Nov {d:02d} {hh:02d}:{mm:02d}:{ss:02d}.{r.randint(0, 999999):06d} 2026"
    module, pid = r.choice(["core", "proxy", "ssl", "mpm_event"]), r.randint(200, 65000)
    text = v.fill(m.template).lstrip("*0123456789 ")
    return f"[{stamp}] [{module}:{level}] [pid {pid}] {text}", fields(stamp, text)


def postgres(r: random.Random, v: Values, m: Message, severity: str) -> Line | None:
    level = r.choice({"debug": ["DEBUG1", "DEBUG2", "DEBUG3"], "info": ["LOG", "INFO"], "notice": ["NOTICE"], "warning": ["WARNING"],
                      "error": ["ERROR", "FATAL"], "critical": ["PANIC"]}[severity])
    d, hh, mm, ss, ms = _clock(r)
    stamp, pid, session = f"2026-11-{d:02d} {hh:02d}:{mm:02d}:{ss:02d}.{ms:03d} UTC", r.randint(200, 65000), r.choice(["", "app@app ", "postgres@postgres "])
    text = v.fill(m.template)
    return f"{stamp} [{pid}] {session}{level}:  {text}", fields(stamp, text)


#: Formats each family of messages appears in, in the train split (test adds its test-only formats).
FORMATS: dict[str, list[Format]] = {
    "system": [bsd_syslog, bsd_syslog, rfc5424, json_line],
    "web": [nginx_error, nginx_error, bsd_syslog, json_line],
    "db": [postgres, postgres, bsd_syslog, json_line],
    "app": [python_logging, log4j, json_line, logfmt, klog, bsd_syslog],
}
TEST_ONLY_FORMATS: dict[str, list[Format]] = {"web": [apache_error], "app": [], "system": [], "db": []}


def access_line(r: random.Random, v: Values) -> tuple[str, str, dict[str, object]]:
    """An nginx access line, its severity by status (1xx-3xx info, 4xx warning, 5xx error) and its fields."""
    status = r.choice([200, 200, 200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 404, 429, 500, 502, 503, 504])
    severity = "info" if status < 400 else "warning" if status < 500 else "error"
    d, hh, mm, ss, _ = _clock(r)
    method = r.choice(["GET", "GET", "POST", "PUT", "DELETE"])
    agent = r.choice(["Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "python-requests/2.32.3", "Go-http-client/1.1"])
    stamp, ip, path, size = f"{d:02d}/Nov/2026:{hh:02d}:{mm:02d}:{ss:02d} +0000", v.fill("{ip}"), v.fill("{path}"), r.randint(0, 90000)
    request = f"{method} {path} HTTP/1.1"
    line = f'{ip} - - [{stamp}] "{request}" {status} {size} "-" "{agent}"'
    return line, severity, fields(stamp, request) | {"client_ip": ip, "method": method, "path": path, "status": status, "bytes": size}


def _line(rng: random.Random, values: Values, messages: dict[str, list[Message]], formats: dict[str, list[Format]]) -> tuple[str, dict[str, object]]:
    """A line and its ``logline`` answer (whose ``severity`` is the ``log-severity`` label)."""
    if rng.random() < 0.08:
        text, severity, found = access_line(rng, values)
        return text, _answer(found, severity)
    severity = rng.choice(SEVERITIES)
    while True:
        message = rng.choice(messages[severity])
        line = rng.choice(formats[message.family])(rng, values, message, severity)
        if line is not None:
            return line[0], _answer(line[1], severity)


def _answer(found: dict[str, object], severity: str) -> dict[str, object]:
    answer = {name: found[name] for name in ("timestamp", "host", "program")} | {"severity": severity}
    return answer | {name: found[name] for name in ("client_ip", "method", "path", "status", "bytes", "message")}


def generate(train_size: int = 1200, test_size: int = 400, seed: int = 0, task: str = "log-severity") -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The two splits; test-only messages, formats and hosts never appear in train.

    ``task`` is the answer each record expects: ``log-severity`` (``{"severity": ...}``) or ``logline`` (every field
    of the line, severity included; the lines are the same)."""
    rng = random.Random(seed)
    hosts = HOSTS[:]
    rng.shuffle(hosts)
    train_values, test_values = Values(rng, hosts[: len(hosts) // 2]), Values(rng, hosts[len(hosts) // 2 :])
    train_messages, test_messages = _split_messages()
    test_formats = {family: FORMATS[family] + TEST_ONLY_FORMATS[family] * 2 for family in FORMATS}
    train = [_line(rng, train_values, train_messages, FORMATS) for _ in range(train_size)]
    test = [_line(rng, test_values, test_messages, test_formats) for _ in range(test_size)]
    if task not in ("log-severity", "logline"):
        raise ValueError(f"no dataset for task {task!r}")
    expected = (lambda answer: {"severity": answer["severity"]}) if task == "log-severity" else (lambda answer: answer)
    return ([{"text": text, "expected": expected(answer)} for text, answer in train],
            [{"text": text, "expected": expected(answer)} for text, answer in test])


def main() -> None:
    from split_files import main as write_splits  # recipes/ is on sys.path when this file runs as a script

    write_splits(__doc__.split("\n\n")[0], generate, Path(__file__).parent / "log-severity")


if __name__ == "__main__":
    main()
