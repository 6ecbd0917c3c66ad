#!/usr/bin/env python3
"""prometheus.py - GET /metrics against Debian's promtool and a real Prometheus.

Needs Debian's `prometheus` package (promtool and the server; bootstrap
installs it): without it the test is skipped (77) and says so.

  1. the shipped examples: `promtool check config` on etc/prometheus/
     katomon.yml (a copy pointing at a free port), `promtool check rules`
     on katomon-rules.yml, and `promtool test rules` with
     tests/integration/prometheus-rules.test.yml (each rule fires when it
     should, with the labels and annotations it should);
  2. katomon with the KATO simulator, host_stats, alert_manager (the
     shipped rules) and docker_stats: watching a container of its own
     (kmprom-PID: light bursts of CPU, removed at the end) when
     tests/docker/setup.sh brings up an engine as it does for docker.py,
     else a socket where no engine answers (the Docker source is then
     down: source_up 0). Checked on GET /metrics: the content type,
     `promtool check metrics` prints nothing and exits 0, HELP and TYPE of
     every family, counters end in _total, and the families the plugins
     declare are exactly the names of the issue 14 brief (no derived name
     slipped through);
  3. a real prometheus on a free loopback port, configured with the shipped
     katomon.yml (target and intervals rewritten: 1 s), scrapes katomon; its
     HTTP API's katomon_kato_cpu_percent, katomon_source_up and (with
     Docker) katomon_container_cpu_percent{container=...} must equal what
     katomon's REST (/api/v1/system/metrics, /system/container-stats,
     /topics/NAME/latest) said at most one scrape earlier: polled with a
     deadline, a value Prometheus reports must be one of the last values
     katomon's REST reported. The simulator's figures and health are
     changed on the way, so Prometheus has to follow them;
  4. with [http] auth_token: /metrics without the token 401, with a wrong
     one 401, with Bearer TOKEN 200, and prometheus with the shipped
     config's authorization block (credentials_file) scrapes it: target
     health "up".
Every process started here (simulator, katomon, prometheus, the
container) is stopped at the end, whatever happened.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kmtest import (Checks, Katomon, Sim, base_conf, env, free_port, http, rmtree,  # noqa: E402
                    shipped_alert_rules, tmpdir, wait_until)

C = Checks()
W = tmpdir("km-prom.")
TOKEN = "prom-test-token-4f1c9a"
SCRAPE_S = 1.0
CONTAINER = f"kmprom-{os.getpid()}"
DOCKER_ENV = dict(os.environ, DOCKER_HOST="unix:///var/run/docker.sock",
                  PATH=os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin")

# The families the plugins declare (the brief's names) and their types.
KATO = {
    "katomon_kato_requests_total": "counter", "katomon_kato_errors_total": "counter",
    "katomon_kato_error_rate_ratio": "gauge", "katomon_kato_response_time_seconds": "gauge",
    "katomon_kato_sessions_created_total": "counter",
    "katomon_kato_sessions_deleted_total": "counter", "katomon_kato_sessions_active": "gauge",
    "katomon_kato_session_operations_total": "counter", "katomon_kato_cpu_percent": "gauge",
    "katomon_kato_memory_percent": "gauge", "katomon_kato_disk_percent": "gauge",
    "katomon_kato_requests_per_second": "gauge", "katomon_kato_errors_per_minute": "gauge",
    "katomon_kato_processors": "gauge", "katomon_kato_processors_max": "gauge",
    "katomon_kato_database_operations_total": "counter",
}
HOST = {f"katomon_host_{n}": "gauge" for n in (
    "cpu_percent", "cpus", "memory_total_bytes", "memory_available_bytes",
    "memory_used_bytes", "memory_used_percent", "load1", "load5", "load15", "uptime_seconds")}
SESSIONS = {"katomon_sessions_active": "gauge"}
CONTAINER_FAMILIES = {
    "katomon_container_up": "gauge",
    "katomon_container_cpu_percent": "gauge", "katomon_container_memory_usage_bytes": "gauge",
    "katomon_container_memory_limit_bytes": "gauge",
    "katomon_container_memory_usage_percent": "gauge",
    "katomon_container_network_receive_bytes_total": "counter",
    "katomon_container_network_transmit_bytes_total": "counter",
    "katomon_container_blkio_read_bytes_total": "counter",
    "katomon_container_blkio_write_bytes_total": "counter", "katomon_container_pids": "gauge",
    "katomon_containers_cpu_percent": "gauge", "katomon_containers_memory_bytes": "gauge",
    "katomon_containers_memory_limit_bytes": "gauge",
    "katomon_containers_memory_percent": "gauge", "katomon_containers_watched": "gauge",
}
OTHER = {"katomon_source_up": "gauge", "katomon_source_failures": "gauge",
         "katomon_alerts_firing": "gauge"}
# The core's hosts topic (issue 15): one of each per known host.
FLEET = {"katomon_host_up": "gauge", "katomon_host_last_seen_age_seconds": "gauge",
         "katomon_host_stale_seconds": "gauge", "katomon_host_messages_total": "counter",
         "katomon_host_refused_total": "counter", "katomon_host_gaps_total": "counter",
         "katomon_host_missed_total": "counter", "katomon_host_restarts_total": "counter"}
# Prefixes of names derived from the plugins' topics: every family under
# them must be one the plugins declare.
DECLARED_PREFIXES = ("katomon_kato_", "katomon_host_", "katomon_container_",
                     "katomon_containers_", "katomon_sessions_", "katomon_alerts_",
                     "katomon_source_", "katomon_metrics_", "katomon_kato_health_")
# The shipped rules' (type, level) pairs: katomon_alerts_firing's label sets.
ALERT_PAIRS = {("high_cpu", "warning"), ("high_cpu", "error"), ("high_memory", "warning"),
               ("high_memory", "error"), ("high_error_rate", "warning"),
               ("high_error_rate", "error"), ("container_down", "error"),
               ("host_down", "error"), ("source_down", "error")}


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def tool(name: str) -> Optional[str]:
    return shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK)
                                  else None)


def run(args: list, stdin: Optional[str] = None, timeout: float = 120,
        cwd: Optional[str] = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=timeout,
                          cwd=cwd)


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          env=DOCKER_ENV)


def get_raw(url: str, token: Optional[str] = None, timeout: float = 5.0
            ) -> tuple[int, dict, str]:
    """GET; (status, headers with lower-case names, body text). Status 0 on a
    connection failure."""
    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, \
                r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, \
            e.read().decode("utf-8", "replace")
    except (OSError, urllib.error.URLError) as e:
        return 0, {}, str(e)


LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def parse_labels(text: str) -> dict:
    out, pos = {}, 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        if not m:
            raise ValueError(f"bad label text: {text!r}")
        out[m.group(1)] = re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1),
                                 m.group(2))
        pos = m.end()
    return out


def parse_exposition(text: str) -> dict:
    """Text format 0.0.4 -> {family: {"help", "type", "samples": [(labels, value)]}}."""
    fams: dict = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            _, kind, name, *rest = line.split(" ", 3)
            fams.setdefault(name, {"help": None, "type": None, "samples": []})
            fams[name]["help" if kind == "HELP" else "type"] = rest[0] if rest else ""
        elif line and not line.startswith("#"):
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$", line)
            if not m:
                raise ValueError(f"bad sample line: {line!r}")
            fam = fams.setdefault(m.group(1), {"help": None, "type": None, "samples": []})
            fam["samples"].append((parse_labels(m.group(2) or ""), float(m.group(3))))
    return fams


def sample(fams: dict, name: str, **labels: str) -> Optional[float]:
    for lab, v in fams.get(name, {}).get("samples", []):
        if all(lab.get(k) == v2 for k, v2 in labels.items()):
            return v
    return None


def same(a: Optional[float], b: Optional[float]) -> bool:
    return a is not None and b is not None and abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def prom_config(kport: int, token_file: Optional[str] = None) -> str:
    """The shipped katomon.yml, pointed at kport, scraping every SCRAPE_S; with
    token_file, its commented authorization block switched on."""
    with open(os.path.join(env("top_srcdir"), "etc", "prometheus", "katomon.yml")) as f:
        text = f.read()
    text = text.replace('"127.0.0.1:8080"', f'"127.0.0.1:{kport}"')
    text = re.sub(r"(scrape_interval|evaluation_interval): 15s", rf"\1: {SCRAPE_S:g}s", text)
    if token_file:
        text = text.replace("    # authorization:\n", "    authorization:\n")
        text = text.replace("    #   type: Bearer\n", "      type: Bearer\n")
        text = re.sub(r"    #   credentials_file: \S+\n", f"      credentials_file: {token_file}\n",
                      text)
    return text


def write_prom_dir(name: str, kport: int, token_file: Optional[str] = None) -> str:
    """A directory with katomon.yml (rewritten) and katomon-rules.yml."""
    d = os.path.join(W, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "katomon.yml"), "w") as f:
        f.write(prom_config(kport, token_file))
    shutil.copy(os.path.join(env("top_srcdir"), "etc", "prometheus", "katomon-rules.yml"), d)
    return d


class Prometheus:
    """One prometheus server on a free loopback port, its own data dir."""

    def __init__(self, binary: str, confdir: str) -> None:
        self.binary, self.confdir = binary, confdir
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = os.path.join(confdir, "prometheus.log")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> bool:
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.confdir}/katomon.yml",
             f"--storage.tsdb.path={self.confdir}/data",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return bool(wait_until(lambda: self.proc.poll() is not None or
                               get_raw(self.base + "/-/ready")[0] == 200, 60)) and \
            self.proc.poll() is None

    def text(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def query(self, expr: str) -> list:
        status, body = http("GET", self.base + "/api/v1/query?" +
                            urllib.parse.urlencode({"query": expr}))
        if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
            return []
        return body["data"]["result"]

    def value(self, expr: str) -> Optional[float]:
        r = self.query(expr)
        return float(r[0]["value"][1]) if len(r) == 1 else None

    def target(self) -> dict:
        status, body = http("GET", self.base + "/api/v1/targets")
        try:
            return body["data"]["activeTargets"][0] if status == 200 else {}
        except (KeyError, IndexError, TypeError):
            return {}

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()


def katomon_conf(sim: Sim, docker_lines: str, token: Optional[str] = None) -> str:
    return base_conf(f"{W}/state", f"auth_token = {token}" if token else "") + f"""
[plugin kato_metrics]
url = {sim.url}
interval = 0.5
timeout = 1

[plugin host_stats]
interval = 1

[plugin docker_stats]
{docker_lines}

[plugin alert_manager]
sync_interval = 0.5

{shipped_alert_rules()}
"""


# ---------------------------------------------------------------------------
# the checks
# ---------------------------------------------------------------------------

def check_examples(promtool: str) -> None:
    d = write_prom_dir("check", free_port())
    r = run([promtool, "check", "config", os.path.join(d, "katomon.yml")])
    C.check(r.returncode == 0 and "SUCCESS" in r.stdout,
            "promtool check config etc/prometheus/katomon.yml (and its rule file)",
            r.stdout + r.stderr)
    rules = os.path.join(env("top_srcdir"), "etc", "prometheus", "katomon-rules.yml")
    r = run([promtool, "check", "rules", rules])
    C.check(r.returncode == 0 and "SUCCESS" in r.stdout,
            "promtool check rules etc/prometheus/katomon-rules.yml", r.stdout + r.stderr)
    shutil.copy(os.path.join(env("top_srcdir"), "tests", "integration",
                             "prometheus-rules.test.yml"), d)
    r = run([promtool, "test", "rules", "prometheus-rules.test.yml"], cwd=d)
    C.check(r.returncode == 0 and "SUCCESS" in r.stdout,
            "promtool test rules: each shipped rule fires when it should, as it should",
            r.stdout + r.stderr)


def docker_ready() -> bool:
    """An engine and the katomon-busybox image, as docker.py gets them, and
    a busy container of this test's own."""
    setup = os.path.join(env("top_srcdir"), "tests", "docker", "setup.sh")
    r = run([setup], timeout=300)
    for line in (r.stdout + r.stderr).splitlines()[-3:]:
        C.note(line)
    if r.returncode != 0:
        C.note(f"tests/docker/setup.sh exited {r.returncode}: containers are not covered")
        return False
    docker("rm", "-f", CONTAINER)
    # Not labelled katomon.test=1: docker.py's teardown removes those. A few
    # percent of CPU in bursts, so its figure moves, but no busy loop: one
    # would take the CPU docker.py's own busy container is checked to get
    # when make check runs both at once.
    r = docker("run", "-d", "--name", CONTAINER, "--init", "--network", "none",
               "katomon-busybox", "/bin/busybox", "sh", "-c",
               "while :; do i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; sleep 0.3; done")
    return C.check(r.returncode == 0, f"container {CONTAINER} (light CPU bursts) started",
                   r.stderr)


def check_metrics(k: Katomon, promtool: str, with_docker: bool) -> dict:
    want = [r"^katomon_source_up\{", r"^katomon_kato_cpu_percent ", r"^katomon_alerts_firing\{"]
    if with_docker:
        want.append(rf'^katomon_container_cpu_percent\{{container="{CONTAINER}"\}}')
    last = [(0, {}, "")]

    def ready() -> bool:
        last[0] = get_raw(k.base + "/metrics")
        return last[0][0] == 200 and all(re.search(p, last[0][2], re.M) for p in want)

    if not C.check(wait_until(ready, 30, 0.2), "GET /metrics holds katomon_source_up, "
                   "katomon_kato_*, katomon_alerts_firing" + (" and the container" if with_docker
                                                               else ""),
                   f"{last[0][0]} {last[0][2][-3000:]}"):
        return {}
    status, headers, body = last[0]
    C.check(headers.get("content-type") == "text/plain; version=0.0.4; charset=utf-8",
            "Content-Type: text/plain; version=0.0.4; charset=utf-8", headers)
    r = run([promtool, "check", "metrics"], stdin=body)
    C.check(r.returncode == 0 and r.stdout == "" and r.stderr == "",
            f"promtool check metrics: nothing to say ({len(body)} bytes, "
            f"{body.count(chr(10))} lines)", f"exit {r.returncode}\n{r.stdout}{r.stderr}")
    try:
        fams = parse_exposition(body)
    except ValueError as e:
        C.fail("/metrics parses as the text format", str(e))
        return {}
    no_meta = [n for n, f in fams.items() if not f["help"] or f["type"] not in ("gauge",
                                                                                "counter")]
    C.check(not no_meta, "every family has HELP and TYPE gauge or counter", no_meta)
    bad_counter = [n for n, f in fams.items() if (f["type"] == "counter") !=
                   n.endswith("_total")]
    C.check(not bad_counter, "counters, and only they, end in _total", bad_counter)
    declared = {**KATO, **HOST, **SESSIONS, **OTHER, **FLEET,
                **(CONTAINER_FAMILIES if with_docker else {})}
    got = {n for n in fams if n.startswith(DECLARED_PREFIXES)}
    C.check(got == set(declared), "the plugins' families are exactly the brief's names",
            {"missing": sorted(set(declared) - got), "unexpected": sorted(got - set(declared))})
    wrong = {n: fams[n]["type"] for n in got & set(declared) if fams[n]["type"] != declared[n]}
    C.check(not wrong, "each declared family has its type", wrong)
    pairs = {(lab.get("type"), lab.get("level"))
             for lab, _ in fams.get("katomon_alerts_firing", {}).get("samples", [])}
    C.check(pairs == ALERT_PAIRS, "katomon_alerts_firing: every (type, level) of the shipped "
            "rules, 0 included", sorted(pairs, key=str))
    sources = {(lab.get("source"), lab.get("topic"))
               for lab, _ in fams.get("katomon_source_up", {}).get("samples", [])}
    C.check({("kato", "metrics"), ("kato", "sessions"), ("kato", "kato_health"),
             ("docker", "containers")} <= sources,
            "katomon_source_up for kato (metrics, sessions, kato_health) and docker", sources)
    dbs = {lab.get("database") for lab, _ in
           fams.get("katomon_kato_database_operations_total", {}).get("samples", [])}
    C.check(dbs == {"clickhouse", "qdrant", "redis"},
            "katomon_kato_database_operations_total{database=clickhouse|qdrant|redis}", dbs)
    return fams


def rest_value(k: Katomon, what: str) -> Optional[float]:
    """katomon's REST view of one figure the test compares."""
    if what == "kato_cpu":
        s, b = k.get("/api/v1/system/metrics")
        v = (b or {}).get("resources", {}).get("cpu_percent") if s == 200 else None
    elif what == "kato_up":
        s, b = k.get("/api/v1/topics/metrics/latest")
        src = b.get("_source") if s == 200 and isinstance(b, dict) else None
        v = (1.0 if src["healthy"] else 0.0) if isinstance(src, dict) else None
    elif what == "container_cpu":
        s, b = k.get(f"/api/v1/system/container-stats/{CONTAINER}")
        v = b.get("cpu") if s == 200 and isinstance(b, dict) else None
    else:
        raise ValueError(what)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def agree(k: Katomon, p: Prometheus, what: str, expr: str, timeout: float = 30,
          want: Optional[float] = None) -> bool:
    """Polls katomon's REST and Prometheus until Prometheus reports a value
    katomon's REST reported within the last scrape interval and a half
    (and equal to `want` when given)."""
    seen: list = []  # (monotonic time, REST value)
    last: dict = {}

    def probe() -> bool:
        now = time.monotonic()
        r = rest_value(k, what)
        if r is not None:
            seen.append((now, r))
        pv = p.value(expr)
        last.update(prom=pv, rest=r)
        recent = [v for t, v in seen if now - t <= 2.5 * SCRAPE_S + 1]
        return pv is not None and any(same(pv, v) for v in recent) and \
            (want is None or same(pv, want))

    ok = wait_until(probe, timeout, 0.2)
    return C.check(ok, f"Prometheus's {expr} = katomon's REST ({last.get('prom')})"
                   + (f", = {want:g}" if want is not None else ""),
                   {"last": last, "rest seen": [v for _, v in seen[-20:]]})


def check_scrape(k: Katomon, sim: Sim, prom_bin: str, with_docker: bool) -> None:
    p = Prometheus(prom_bin, write_prom_dir("scrape", k.port))
    try:
        if not C.check(p.start(), f"prometheus starts on 127.0.0.1:{p.port}",
                       p.text()[-3000:]):
            return
        got = wait_until(lambda: p.query("katomon_source_up"), 30, 0.2)
        if not C.check(bool(got), "Prometheus has katomon_source_up", p.target()):
            return
        t = p.target()
        C.check(t.get("health") == "up" and t.get("labels", {}).get("job") == "katomon",
                "target job katomon is up", t)
        sim.set(cpu_percent=37.25)
        agree(k, p, "kato_cpu", "katomon_kato_cpu_percent", want=37.25)
        sim.set(cpu_percent=61.5)
        agree(k, p, "kato_cpu", "katomon_kato_cpu_percent", want=61.5)
        expr = 'katomon_source_up{source="kato",topic="metrics"}'
        agree(k, p, "kato_up", expr, want=1)
        sim.mode("http500", paths=["/metrics"])
        agree(k, p, "kato_up", expr, want=0)
        C.check(not p.query("katomon_kato_cpu_percent") or
                wait_until(lambda: not p.query("katomon_kato_cpu_percent"), 15, 0.2),
                "KATO failing: katomon_kato_cpu_percent is no longer exported (stale in "
                "Prometheus)", p.query("katomon_kato_cpu_percent"))
        sim.mode("normal")
        agree(k, p, "kato_up", expr, want=1)
        if with_docker:
            agree(k, p, "container_cpu",
                  f'katomon_container_cpu_percent{{container="{CONTAINER}"}}', timeout=45)
        firing = p.query("katomon_alerts_firing")
        C.check(len(firing) == len(ALERT_PAIRS), "Prometheus has katomon_alerts_firing for "
                "every (type, level)", firing)
    finally:
        p.stop()


def check_auth(sim: Sim, prom_bin: str, docker_lines: str, daemons: list) -> None:
    k = Katomon(W, "auth", katomon_conf(sim, docker_lines, TOKEN))
    daemons.append(k)
    if not C.check(k.start(), f"katomon with [http] auth_token starts (port {k.port})",
                   k.text()[-3000:]):
        return
    C.check(get_raw(k.base + "/metrics")[0] == 401, "/metrics without the token: 401")
    C.check(get_raw(k.base + "/metrics", "not-the-token")[0] == 401,
            "/metrics with a wrong token: 401")
    ok = wait_until(lambda: "katomon_source_up" in get_raw(k.base + "/metrics", TOKEN)[2], 20)
    C.check(ok, "/metrics with Authorization: Bearer TOKEN: 200 with the series")
    token_file = os.path.join(W, "katomon.token")
    with open(token_file, "w") as f:
        f.write(TOKEN + "\n")
    p = Prometheus(prom_bin, write_prom_dir("auth", k.port, token_file))
    try:
        if C.check(p.start(), "prometheus with the authorization block starts",
                   p.text()[-3000:]):
            t = wait_until(lambda: (lambda t: t if t.get("health") == "up" else None)(
                p.target()), 30, 0.2)
            C.check(bool(t), "it scrapes katomon with the token: target health up",
                    p.target())
            C.check(bool(wait_until(lambda: p.query("katomon_source_up"), 15, 0.2)),
                    "and has katomon_source_up")
    finally:
        p.stop()
    good, detail = k.stop()
    C.check(good, "katomon (auth): SIGTERM -> exit status 0, no sanitizer report", detail)


def main() -> int:
    promtool, prom_bin = tool("promtool"), tool("prometheus")
    if not promtool or not prom_bin:
        print("SKIP: Debian's prometheus package is not installed (promtool, prometheus): "
              "run ./bootstrap as root, or tests/apt-quiet-install.sh prometheus")
        return 77
    sim = Sim(W)
    daemons: list = []
    with_docker = False
    try:
        check_examples(promtool)
        if not C.check(sim.start(), "the KATO simulator starts"):
            return C.done()
        with_docker = docker_ready()
        docker_lines = (f"socket = /var/run/docker.sock\ncontainers = {CONTAINER}\n"
                        "interval = 1\nevents = false" if with_docker else
                        f"socket = {W}/no-docker.sock\ninterval = 1\nevents = false")
        k = Katomon(W, "run", katomon_conf(sim, docker_lines))
        daemons.append(k)
        if not C.check(k.start(), f"katomon starts (port {k.port})", k.text()[-3000:]):
            return C.done()
        if check_metrics(k, promtool, with_docker):
            check_scrape(k, sim, prom_bin, with_docker)
        good, detail = k.stop()
        C.check(good, "katomon: SIGTERM -> exit status 0, no sanitizer report", detail)
        check_auth(sim, prom_bin, docker_lines, daemons)
        return C.done()
    finally:
        for d in daemons:  # a run cut short: leave nothing behind
            if d.alive():
                d.kill9()
        sim.stop()
        if with_docker:
            docker("rm", "-f", CONTAINER)
        if C.failed == 0:
            rmtree(W)
        else:
            C.note(f"kept {W} for inspection")


if __name__ == "__main__":
    sys.exit(main())
