"""The `[metrics]` and `[shared_state]` sections: what the daemon offers and shares.

Owns: `[metrics]` -> MetricsConfig (textfile, loopback-only listener, interval)
and `[shared_state]` -> SharedStateConfig (etcd endpoints, https unless
`insecure`, prefix, auth, TLS files, host preference). Never connects to etcd
or binds a socket; the only file it reads is the etcd password file, and only
when `check_files` is set.
"""

from __future__ import annotations

import socket

from kms.config.addresses import host_port, is_loopback
from kms.config.model import DEFAULT_PREFERENCE_DELAY, MetricsConfig, SharedStateConfig
from kms.config.provider_section import check_password_file
from kms.config.table import ParseContext, Table, duration


def parse_metrics(ctx: ParseContext, t: Table) -> MetricsConfig:
    listen: tuple[str, int] | None = None
    if t.has("listen"):
        what = "a loopback host:port such as 127.0.0.1:9464 (the zone is outbound-only)"
        hp = host_port(t.text("listen", what))
        if hp is None or not is_loopback(hp[0]):
            t.expected("listen", what)
        listen = hp
    return MetricsConfig(
        textfile=t.optional_path("textfile"),
        listen=listen,
        interval=t.seconds("interval", MetricsConfig().interval),
    )


# --- [shared_state] (NEW) ---------------------------------------------------------


def parse_shared_state(ctx: ParseContext, t: Table) -> SharedStateConfig:
    t.choice("backend", ("etcd",), default="etcd")
    insecure = t.boolean("insecure", False)
    what = 'a non-empty list of etcd URLs such as ["https://10.0.0.1:2379"]'
    raw = t.data.get("endpoints")
    if not isinstance(raw, list) or not raw or not all(isinstance(e, str) for e in raw):
        t.expected("endpoints", what)
    for e in raw:
        scheme, sep, rest = e.partition("://")
        if not sep or scheme not in ("http", "https") or host_port(rest.rstrip("/")) is None:
            t.fail("endpoints", f"expected {what}, got {e!r} in the list")
        if scheme == "http" and not insecure:
            t.fail(
                "endpoints",
                f"{e!r} is plain http: the watermark would travel unauthenticated;"
                " use https:// (and tls), or set insecure = true for a loopback test",
            )
    prefix = t.text(
        "prefix", 'an etcd key prefix such as "/kms/prod"',
        check=lambda p: p.startswith("/") and p.isascii() and p.isprintable() and p != "/",
    )  # fmt: skip
    timeout = duration(t, "timeout", 1.0)
    username = password_file = None
    if t.has("auth"):
        a = t.sub("auth", ("username", "password_file"), "{ username, password_file }")
        username = a.text("username", "an etcd user name")
        password_file = a.path("password_file")
        if ctx.check_files:
            check_password_file(a, password_file)
    ca = cert = key = None
    if t.has("tls"):
        tt = t.sub("tls", ("ca_file", "cert_file", "key_file"), "{ ca_file, cert_file, key_file }")
        ca, cert, key = (tt.optional_path(k) for k in ("ca_file", "cert_file", "key_file"))
        if (cert is None) != (key is None):
            tt.fail("cert_file", "cert_file and key_file go together (a client certificate)")
    pref_ttl, pref_delay = None, DEFAULT_PREFERENCE_DELAY
    if t.has("preference"):
        p = t.sub("preference", ("ttl", "delay"), '{ ttl = 3, delay = "200ms" }')
        pref_ttl = p.integer("ttl", 1, 3600, "a lease TTL in whole seconds (1..3600)")
        pref_delay = duration(p, "delay", pref_delay)
    return SharedStateConfig(
        preference_ttl=pref_ttl,
        preference_delay=pref_delay,
        endpoints=tuple(raw),
        prefix=prefix.rstrip("/"),
        host_id=t.text("host_id", "a host name for the records", default=socket.gethostname()),
        timeout=timeout,
        username=username,
        password_file=password_file,
        ca_file=ca,
        cert_file=cert,
        key_file=key,
        insecure=insecure,
    )
