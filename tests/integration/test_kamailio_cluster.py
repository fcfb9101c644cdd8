"""Two Asterisk nodes behind Kamailio's dispatcher, each in its own network namespace.

`asterisk/cluster up` makes the LAN namespace (a bridge), Kamailio's and one per node, and
starts everything: real Kamailio, two real Asterisk 22 nodes from the project's chroot with the
project's config and dialplans, real SIP calls to the main number from the LAN namespace
(tests/integration/cluster_calls.py). No bot is connected to the nodes: the dialplan's fail-open
route answers each call with its message, which the caller must hear (RTP flows caller <-> node,
past the proxy). Which node took a call is seen twice: the node names itself in its 200 OK
(Server header, Contact address), and its own CLI counts the call.

The test checks: calls are spread over both nodes; a stopped node is out of the rotation
within the probe interval (+ the probe's timeout) and every new call goes to the other; a
restarted node is back as soon as it answers a probe; a node that dies abruptly (SIGKILL) is out
within the probe interval + timeout, and while calls come in none is lost (a call sent to the
dead node moves to the other one). Afterwards no namespace, process or file of the cluster is
left, the host's own interfaces were never touched, and the normal Asterisk (127.0.0.1:5060)
was neither started nor stopped and its config is unchanged. About 20 s.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.telephony import pbx_running
from voicebot.config import PROJECT_ROOT

pytestmark = pytest.mark.integration

CLUSTER = PROJECT_ROOT / "asterisk" / "cluster"
LOCK = Path("/tmp/kk-voicebot-asterisk.lock")  # the same lock as tests/integration/conftest.py
RUN = PROJECT_ROOT / "asterisk" / "kamailio" / "run"
CHROOT = PROJECT_ROOT / "asterisk" / "chroot"
NAMESPACES = ("kkv-lan", "kkv-sip", "kkv-ast1", "kkv-ast2")
NODE_ADDR = {"node1": "10.77.0.11", "node2": "10.77.0.12"}
NODE_DIRS = [f"{d}-node{n}" for n in (1, 2) for d in
             ("etc/asterisk", "var/lib/asterisk", "var/spool/asterisk", "var/log/asterisk", "run/asterisk")]

# asterisk/kamailio/kamailio.cfg: OPTIONS probes every ds_ping_interval; one that gets no reply
# within tm's fr_timer takes the node out (ds_probing_threshold 1)
PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 0.8
MARGIN_S = 1.5  # process start-up, the poll, a loaded 2-core machine


def _kamailio() -> str | None:
    return shutil.which("kamailio") or ("/usr/sbin/kamailio" if os.path.exists("/usr/sbin/kamailio") else None)


def cannot_run() -> str | None:
    """Why this machine cannot run the cluster (a reason to skip), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip"):
        return "iproute2 (`ip`) is missing"
    probe = f"kkv-probe-{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"network namespaces are not allowed here (`ip netns add`: {r.stderr.strip() or r.returncode})"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    if _kamailio() is None:
        return "kamailio is not installed (`make setup` installs Debian's kamailio)"
    return None


def cluster(*args: str, timeout: float = 60) -> str:
    r = subprocess.run([str(CLUSTER), *args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "CLUSTER_PYTHON": sys.executable})
    if r.returncode != 0:
        raise AssertionError(f"asterisk/cluster {' '.join(args)} failed ({r.returncode}):\n{r.stdout}{r.stderr}{logs()}")
    return r.stdout


def logs(lines: int = 30) -> str:
    out = ""
    for name in ("kamailio.log", "node1.log", "node2.log"):
        path = RUN / name
        if path.exists():
            out += f"\n--- {name} (last {lines} lines)\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return out


def calls(count: int) -> list[dict]:
    """``count`` calls to the main number through Kamailio, one after the other."""
    r = subprocess.run([str(CLUSTER), "call", "--count", str(count), "--hear", "0.3", "--json"],
                       capture_output=True, text=True, timeout=30 + 15 * count,
                       env={**os.environ, "CLUSTER_PYTHON": sys.executable})
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"asterisk/cluster call failed ({r.returncode}):\n{r.stdout}{r.stderr}{logs()}") from None


def check_answered(results: list[dict]) -> Counter:
    """Every call answered by a node that names itself, heard, and hung up through the proxy;
    returns the calls per node."""
    for r in results:
        assert r["answered"], f"call {r['call']} not answered: {r}{logs()}"
        assert r["node"] in NODE_ADDR, f"call {r['call']}: the 200 OK names no node: {r}"
        assert NODE_ADDR[r["node"]] in r["contact"], f"call {r['call']}: Server and Contact disagree: {r}"
        assert r["routed"], f"call {r['call']}: no Record-Route from Kamailio: {r}"
        assert r["heard_s"] > 0, f"call {r['call']}: the caller heard nothing from {r['node']}: {r}"
    return Counter(r["node"] for r in results)


def processed(node: int) -> int:
    """Calls node N's own Asterisk has taken since it started (`core show channels count`)."""
    out = cluster("cli", str(node), "core show channels count")
    m = re.search(r"(\d+) calls? processed", out)
    assert m, out
    return int(m.group(1))


def dispatcher() -> dict[str, str]:
    """Kamailio's view: node -> flags (A active, I inactive, T trying; P probing)."""
    return {name: flags for name, _, flags in (line.split() for line in cluster("dispatcher").splitlines())}


def wait_state(node: str, state: str, timeout: float) -> float:
    """Seconds until the dispatcher shows ``node`` in ``state`` (A or I)."""
    t0 = time.monotonic()
    while True:
        flags = dispatcher().get(node, "")
        if flags.startswith(state):
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{node} not {state} after {timeout:.1f} s (flags {flags!r}){logs()}")
        time.sleep(0.05)


def crash(node: int) -> None:
    """SIGKILL node N's Asterisk (by its PID, checked to be the chroot's)."""
    pid = int((RUN / f"node{node}.pid").read_text())
    assert os.readlink(f"/proc/{pid}/root") == str(CHROOT.resolve()), f"PID {pid} is not node {node}'s Asterisk"
    os.kill(pid, signal.SIGKILL)


def root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip() for line in out.splitlines()}


def tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        h.update(str(f.relative_to(path)).encode())
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()


def _stat(pid: int | str) -> list[str]:
    """/proc/PID/stat's fields after the command name: [0] state, [19] start time."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def namespace_processes() -> set[tuple[int, str]]:
    """(pid, start time) of every process in the cluster's namespaces."""
    found = set()
    for ns in NAMESPACES:
        r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
        for pid in r.stdout.split():
            if len(stat := _stat(pid)) > 19:
                found.add((int(pid), stat[19]))
    return found


def alive(pid: int, start: str) -> bool:
    """The same process (a reused PID has another start time), and not a zombie."""
    stat = _stat(pid)
    return len(stat) > 19 and stat[19] == start and stat[0] != "Z"


def _lock_held_here() -> bool:
    """This process holds the Asterisk lock already (the session's `asterisk` fixture takes it
    once and keeps it to the end of the run): /proc/locks names the holder's PID."""
    inode = os.stat(LOCK).st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        f = line.split()
        if len(f) > 5 and f[1] == "FLOCK" and f[4] == str(os.getpid()) and f[5].rsplit(":", 1)[-1] == str(inode):
            return True
    return False


@contextmanager
def asterisk_lock():
    """The test suite's Asterisk lock (tests/integration/conftest.py). The nodes share neither
    ports nor files with the normal Asterisk, but test runs of several checkouts stay serial.
    A second flock from a process that holds it would wait for itself: held here counts."""
    with open(LOCK, "a") as lock:
        if not _lock_held_here():
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print("waiting for another test run to finish with Asterisk ...", file=sys.stderr)
                fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # closing the file releases a lock taken here, never the session's


@pytest.fixture
def up():
    """The cluster, up; torn down afterwards whatever happened, and checked to leave nothing.

    The normal Asterisk is neither needed nor touched: when it runs, it must run on, and its
    config in the chroot must be the same afterwards.
    """
    reason = cannot_run()
    if reason:
        pytest.skip(reason)
    with asterisk_lock():
        present = [ns for ns in NAMESPACES if Path(f"/run/netns/{ns}").exists()]
        if present:
            pytest.fail(f"a cluster is up already ({', '.join(present)}): `asterisk/cluster down` first")
        yield from _cluster_up_then_down()


def _cluster_up_then_down():
    links = root_links()
    etc = tree_digest(CHROOT / "etc" / "asterisk")
    normal_pbx = pbx_running()
    procs: set[tuple[int, str]] = set()
    try:
        cluster("up", timeout=90)
        procs |= namespace_processes()
        assert root_links() == links, "the cluster added or removed an interface in the host's namespace"
        yield
    finally:
        procs |= namespace_processes()
        down = subprocess.run([str(CLUSTER), "down"], capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, f"asterisk/cluster down failed:\n{down.stdout}{down.stderr}"
    assert not [ns for ns in NAMESPACES if Path(f"/run/netns/{ns}").exists()], "a namespace is left"
    assert not [p for p in procs if alive(*p)], f"processes left: {[p for p in procs if alive(*p)]}"
    assert not RUN.exists(), f"{RUN} is left"
    assert not [d for d in NODE_DIRS if (CHROOT / d).exists()], "node directories are left in the chroot"
    assert root_links() == links, "the host's interfaces changed"
    assert pbx_running() == normal_pbx, "the normal Asterisk was started or stopped"
    assert tree_digest(CHROOT / "etc" / "asterisk") == etc, "the normal Asterisk's config changed"


def test_two_nodes_behind_kamailio(up, capsys):
    t_start = time.monotonic()
    bound = PROBE_INTERVAL_S + PROBE_TIMEOUT_S + MARGIN_S
    measured: dict[str, float] = {}

    # 1. spread: round robin over both nodes, and each node's own count agrees
    before = {n: processed(n) for n in (1, 2)}
    per_node = check_answered(calls(6))
    assert per_node["node1"] >= 2 and per_node["node2"] >= 2, f"not spread over both nodes: {per_node}"
    assert {f"node{n}": processed(n) - before[n] for n in (1, 2)} == dict(per_node), "the nodes' CLI counts disagree"

    # 2. node 1 stops: out of the rotation within the probe interval, every call goes to node 2
    t0 = time.monotonic()
    cluster("stop-node", "1")
    stopped = time.monotonic()
    measured["stop_node_s"] = stopped - t0
    measured["out_after_stopped_s"] = wait_state("node1", "I", bound)
    measured["out_after_stop_command_s"] = time.monotonic() - t0
    before2 = processed(2)
    per_node = check_answered(calls(4))
    assert per_node == Counter(node2=4), f"calls reached a stopped node: {per_node}"
    assert processed(2) - before2 == 4

    # 3. node 1 back: in the rotation at its first answered probe, and takes calls again
    t0 = time.monotonic()
    cluster("start-node", "1")
    measured["start_node_s"] = time.monotonic() - t0
    measured["back_after_started_s"] = wait_state("node1", "A", bound)
    per_node = check_answered(calls(4))
    assert per_node["node1"] >= 1 and per_node["node2"] >= 1, f"node 1 takes no calls after its restart: {per_node}"

    # 4. node 2 dies abruptly (SIGKILL: no goodbye), no calls: the probes alone take it out
    crash(2)
    measured["out_after_crash_s"] = wait_state("node2", "I", bound)
    assert check_answered(calls(2)) == Counter(node1=2)

    # 5. node 1 dies abruptly while calls come in: none is lost. A call the dispatcher still
    #    sends there (before a probe noticed) times out after fr_timer and moves to node 2
    cluster("start-node", "2")
    wait_state("node2", "A", bound)
    crash(1)
    results = calls(4)
    per_node = check_answered(results)
    assert per_node == Counter(node2=4), f"calls reached a dead node: {per_node}"
    slowest = max(r["setup_ms"] for r in results) / 1000
    measured["slowest_setup_after_crash_s"] = slowest
    measured["calls_moved_after_crash"] = sum(r["setup_ms"] > 500 for r in results)
    assert slowest <= PROBE_TIMEOUT_S + MARGIN_S, f"a call waited {slowest:.1f} s for the dead node"
    assert dispatcher()["node1"].startswith("I"), "the dead node is still in the rotation"

    measured["test_s"] = time.monotonic() - t_start
    with capsys.disabled():
        print("\ncluster:", json.dumps({k: round(v, 2) for k, v in measured.items()}))
