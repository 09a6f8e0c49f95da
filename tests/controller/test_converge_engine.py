"""The controller on real engines (podman and docker): upgrades one service without
downtime, keeps the old version serving when the new one fails, converges back on
`git revert`, repairs drift, resumes after a crash, ignores invalid commits."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import BASE_RECIPE, ROOT, build_image

from .webcloud import LoadGenerator, make_web_cloud

pytestmark = pytest.mark.engine


@pytest.fixture
def web(tmp_path, engine, unique, port):
    images = {"python": build_image(engine, *BASE_RECIPE),
              "haproxy": build_image(engine, ROOT / "tests/clouds/web/images", "haproxy")}
    cloud = make_web_cloud(tmp_path, engine, unique, port, images=images)
    status = cloud.reconcile()
    assert status.condition() == "Ready", status.render()
    cloud.wait_serving("2025.1")
    yield cloud
    cloud.teardown()


def test_rolling_upgrade_of_one_service_keeps_serving_and_touches_nothing_else(web):
    lb_before = web.containers("lb")
    web_before = web.containers("web")
    assert len(web_before) == 2 and len(lb_before) == 1
    load = LoadGenerator(web.url()).start()
    while load.total < 300:                       # traffic flows before the change
        pass
    web.upgrade_web("2025.2")
    status = web.reconcile()
    load.stop(minimum=2000)
    assert status.condition() == "Ready", status.render()
    assert load.failed == 0, (load.errors[:5], web.front_logs())
    assert load.total >= 2000 and load.releases.get("2025.2", 0) > 0
    assert web.containers("lb") == lb_before                  # the balancer was not touched
    after = web.containers("web")
    assert len(after) == 2 and not set(after.values()) & set(web_before.values())
    web.wait_serving("2025.2")


def test_reconcile_is_idempotent(web):
    before = web.containers()
    status = web.reconcile()
    assert status.condition() == "Ready" and web.containers() == before


def test_failing_new_version_leaves_the_old_serving_and_status_red(web):
    before = web.containers("web")
    bad = web.upgrade_web("2025.2", FAIL_MODE="unhealthy")
    status = web.reconcile()
    assert status.condition() == "Stalled" and status.reason == "RolloutFailed"
    assert status.failed_revision == bad and status.failure["logs"] is not None
    assert "did not become healthy" in status.failure["error"]
    assert web.containers("web") == before                     # old replicas untouched
    web.wait_serving("2025.1")
    again = web.reconcile()                                    # the bad commit is not retried
    assert again.condition() == "Stalled" and web.containers("web") == before


def test_a_successor_that_falls_over_within_min_ready_stops_the_rollout(web):
    """It passes its first health check and is sick a second later: the old replica it
    would have replaced was never stopped (min_ready holds the retirement back)."""
    before = web.containers("web")
    data = web.service("web")
    data["upgrade"]["min_ready"] = 4
    web.commit_service("web", data, "web: min_ready 4")
    assert web.reconcile().condition() == "Ready" and web.containers("web") == before
    web.upgrade_web("2025.2", SICK_AFTER="1")
    status = web.reconcile()
    assert status.reason == "RolloutFailed", status.render()
    assert "after it was healthy" in status.failure["error"], status.failure
    assert web.containers("web") == before                     # both old replicas still there
    web.wait_serving("2025.1")


# Resolves the service alias from inside the cloud network, as the front does, ten times a
# second (bounded: 5 minutes at most), and prints each answer.
DNS_PROBE = ("import socket, time\n"
             "for _ in range(3000):\n"
             "    try:\n"
             "        print(sorted({a[4][0] for a in socket.getaddrinfo('web', 8080, socket.AF_INET)}), flush=True)\n"
             "    except OSError as err:\n"
             "        print('error', err, flush=True)\n"
             "    time.sleep(0.1)\n")


def test_a_sick_successor_never_joins_the_alias_and_no_request_through_the_front_fails(web, base_image):
    """The successor answers 500 to everything, its health check included (a Placement
    whose uwsgi accepts and resets did the same to 4 of 122,884 requests when it was in
    the alias from its creation). It must never be in the answer the front gets for the
    service's name, and the load through the front must not see a single failure."""
    from controller.engines import ContainerSpec
    data = web.service("web")
    data["health"] = {**data["health"], "start_period": 3}              # the gate gives up sooner
    web.commit_service("web", data, "web: start_period 3")
    assert web.reconcile().condition() == "Ready"
    before = web.containers("web")
    web.upgrade_web("2025.2", FAIL_MODE="sick")
    probe = f"{web.name}-dns-probe"                                     # unlabelled: tidegate ignores it
    web.engine.create(ContainerSpec(name=probe, image=base_image, command=("python3", "-c", DNS_PROBE),
                                    network=f"tidegate-{web.name}",
                                    ulimits={"nofile": (1024, 1024), "nproc": (5000, 5000)}))
    successors = {}

    def progress(event, step, detail):
        if event == "done" and step.action == "create":
            successors[step.container] = web.engine.inspect(step.container).ip(f"tidegate-{web.name}")
    try:
        web.engine.start(probe)
        load = LoadGenerator(web.url()).start()
        while load.total < 300:                       # traffic flows before the change
            pass
        status = web.controller(progress=progress).reconcile()
        load.stop(minimum=load.total + 300)
        answers = [line for line in web.engine.logs(probe, tail=None).splitlines() if line.startswith("[")]
    finally:
        web.engine.remove(probe)
    print(f"{web.engine.kind}: {load.total} requests through the front during the failed rollout, "
          f"{load.failed} failed; {len(answers)} DNS answers for 'web'; successor(s) {successors}")
    assert status.reason == "RolloutFailed" and "did not become healthy" in status.failure["error"], status.render()
    assert successors and all(successors.values())
    assert len(answers) > 20 and answers[-1] != "[]", answers[-5:]
    assert not [a for a in answers if any(f"'{ip}'" in a for ip in successors.values())], (successors, answers)
    assert load.failed == 0, (load.errors[:5], web.front_logs())
    assert web.containers("web") == before
    web.wait_serving("2025.1")


def test_crashing_new_version_is_reported_with_its_logs(web):
    web.upgrade_web("2025.2", FAIL_MODE="crash")
    status = web.reconcile()
    assert status.reason == "RolloutFailed"
    assert "FAIL_MODE=crash" in status.failure["logs"]
    web.wait_serving("2025.1")


def test_git_revert_converges_back_and_volume_data_survives(web):
    assert web.put("/data", "written-on-2025.1") == 200
    up = web.upgrade_web("2025.2")
    assert web.reconcile().condition() == "Ready"
    web.wait_serving("2025.2")
    assert web.get("/data") == (200, "written-on-2025.1"), web.front_logs()
    web.repo.git("revert", "--no-edit", up)
    status = web.reconcile()
    assert status.condition() == "Ready", status.render()
    web.wait_serving("2025.1")
    assert web.get("/data") == (200, "written-on-2025.1"), web.front_logs()
    assert status.history[0]["result"] == "applied"


def test_drift_is_repaired(web):
    victim_name, victim_id = sorted(web.containers("web").items())[0]
    web.engine.remove(victim_id)
    status = web.reconcile(drift_check=True)
    assert status.condition() == "Ready" and status.drift_repairs == 1
    assert len(web.containers("web")) == 2 and victim_name in web.containers("web")


def test_a_replica_stopped_by_hand_is_put_back(web):
    victim_name, victim_id = sorted(web.containers("web").items())[1]
    web.engine.stop(victim_id, grace=1)
    status = web.reconcile(drift_check=True)
    assert status.condition() == "Ready" and status.drift_repairs == 1
    assert victim_name in web.containers("web")
    assert web.engine.inspect(victim_name).running
    assert web.containers("lb") and len(web.containers("web")) == 2


def test_status_counts_only_healthy_replicas_as_ready(web):
    sick = sorted(web.containers("web"))[0]
    assert web.engine.exec(sick, ["touch", "/tmp/unhealthy"]).exit_code == 0
    status = web.reconcile(drift_check=True)
    replicas = {r["name"]: r for r in status.services["web"]["running"]}
    assert replicas[sick]["healthy"] is False and "500" in replicas[sick]["health"]
    assert [r["healthy"] for n, r in replicas.items() if n != sick] == [True]
    assert "1/2" in status.render() and "1 unhealthy" in status.render()


def test_stop_during_a_health_gate_lets_it_finish_and_resumes_the_commit(web):
    """SIGTERM (the cancel event) while a successor's health gate runs: the gate finishes,
    no further step starts, and the commit is resumed later — not judged a failed rollout."""
    import threading
    up = web.upgrade_web("2025.2")
    cancel = threading.Event()
    seen = []

    def progress(event, step, detail):
        seen.append((event, step.action))
        if event == "start" and step.action == "wait-healthy":
            cancel.set()
    status = web.controller(progress=progress, cancel=cancel).reconcile()
    assert status.reason == "Interrupted" and status.condition() == "Reconciling", status.render()
    assert status.failed_revision is None and status.errors_total == 0
    assert seen[-1] == ("done", "wait-healthy")               # the step in progress finished
    mixed = web.containers("web")
    assert len(mixed) == 3                                    # its successor kept, beside two old
    status = web.reconcile()
    assert status.condition() == "Ready" and status.last_applied_revision == up, status.render()
    assert len(set(web.containers("web")) & set(mixed)) == 1
    web.wait_serving("2025.2")


class Crash(BaseException):
    """The controller process dying (kill -9) at a chosen point: nothing after it runs."""


def test_a_crash_before_the_contract_phase_still_contracts_after_restart(web):
    data = web.service("web")
    data.update(release="2025.2", image="localhost/tidegate/web:2025.2",
                environment={**data["environment"], "RELEASE": "2025.2"})
    data["upgrade"]["jobs"] = {
        "expand": [{"command": ["sh", "-c", "echo expanded > /data/value"]}],
        "contract": [{"command": ["sh", "-c", "echo contracted > /data/value"]}]}
    up = web.commit_service("web", data, "web 2025.2 with migration phases")
    removed = []

    def progress(event, step, detail):
        if event == "done" and step.action == "remove":
            removed.append(step.container)
            if len(removed) == 2:                             # the last old replica is gone
                raise Crash()
    with pytest.raises(Crash):
        web.controller(progress=progress).reconcile()
    assert web.get("/data") == (200, "expanded\n"), web.front_logs()
    status = web.reconcile()                                  # the restarted controller
    assert status.condition() == "Ready" and status.last_applied_revision == up, status.render()
    assert "web" in status.contracted and "web" not in status.pending_contract
    assert web.get("/data") == (200, "contracted\n"), web.front_logs()
    assert web.controller().plan(web.controller().target("HEAD").desired)[0].empty   # settled


def test_invalid_commit_is_never_applied(web):
    before = web.containers()
    data = web.service("web")
    data["release"] = "2026.2"                    # 2025.1 -> 2026.2: not an upgrade path
    data["image"] = "localhost/tidegate/web:2026.2"
    bad = web.commit_service("web", data, "skip two releases")
    status = web.reconcile()
    assert status.condition() == "Stalled" and status.reason == "ValidationFailed"
    assert status.last_attempted_revision == bad and status.last_applied_revision != bad
    assert any(f["rule"] == "transition.upgrade-path" for f in status.findings)
    assert web.containers() == before
    web.wait_serving("2025.1")


def test_unlabelled_containers_are_never_touched(web, base_image, unique):
    from controller.engines import ContainerSpec
    stranger = f"{unique}-stranger"
    web.engine.create(ContainerSpec(name=stranger, image=base_image, command=("sleep", "60"),
                                    ulimits={"nofile": (1024, 1024), "nproc": (5000, 5000)}))
    try:
        web.upgrade_web("2025.2")
        assert web.reconcile().condition() == "Ready"
        assert web.engine.inspect(stranger) is not None
    finally:
        web.engine.remove(stranger)


def test_kill_9_of_tidegate_apply_mid_rollout_then_restart(web):
    """A real `kill -9` of the controller process after the first successor is healthy:
    the next run finishes the rollout with no duplicate, and the volume data is intact."""
    import os
    import signal
    import subprocess
    import sys
    assert web.put("/data", "before the crash") == 200
    web.upgrade_web("2025.2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "apply", "--repo", str(web.repo.path), "--cloud", web.name,
         "--state-dir", str(web.state_dir), "--engine-url", f"{web.engine.kind}={web.engine.url}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    seen = []
    for line in proc.stdout:
        seen.append(line.rstrip())
        if "[ok]" in line and "wait-healthy" in line:
            os.kill(proc.pid, signal.SIGKILL)     # no cleanup, no status write: a crash
            break
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "\n".join(seen)
    mixed = web.containers("web")
    assert len(mixed) == 3, mixed                  # one healthy successor beside the two old replicas
    status = web.reconcile()
    assert status.condition() == "Ready", status.render()
    final = web.containers("web")
    assert len(final) == 2 and len(set(final) & set(mixed)) == 1      # the successor was reused
    web.wait_serving("2025.2")
    assert web.get("/data") == (200, "before the crash"), web.front_logs()


def _two_host_engines(farm, kind, base_image, releases) -> dict:
    """Two "hosts" of one cloud: this worker's two private engines of `kind`, with the
    python base image tagged as localhost/tidegate/svc:<release> on both."""
    from controller.engines import connect
    engines = {h: connect(kind, farm.get(kind, slot).url, h) for slot, h in enumerate("ab")}
    build_image(engines["b"], *BASE_RECIPE)                     # `base_image` is on host a
    for e in engines.values():
        for release in releases:
            e.tag(base_image, f"localhost/tidegate/svc:{release}")
    return engines


def _two_host_cloud(name: str, kind: str, engines: dict) -> str:
    import yaml
    return yaml.safe_dump({"name": name, "hosts": {h: {"engine": kind, "url": e.url} for h, e in engines.items()}})


def _tcp_service(project: str, host: str, release: str) -> str:
    import yaml
    return yaml.safe_dump({
        "project": project, "release": release, "image": f"localhost/tidegate/svc:{release}", "hosts": [host],
        "replicas": 1, "command": ["python3", "-m", "http.server", "8080"], "environment": {"RELEASE": release},
        "health": {"type": "tcp", "port": 8080, "interval": 0.5, "start_period": 20}})


def _remove_cloud(engines: dict, name: str) -> None:
    for e in engines.values():
        for c in e.list_containers({"tidegate.cloud": name}):
            e.remove(c.id)
        e.remove_network(f"tidegate-{name}")


def test_engine_host_down_then_back(farm, kind, tmp_path, unique, base_image):
    """Two hosts; one engine stops answering: the other host's service is upgraded, the
    dead host is reported; the engine comes back and the next reconcile finishes the job."""
    from controller.engines import connect, local
    from controller.reconcile import Controller
    from controller.source import Source
    from tests.validators.helpers import GitRepo

    hosts = {"a": farm.get(kind, 0), "b": farm.get(kind, 1)}
    engines = _two_host_engines(farm, kind, base_image, ("2025.1", "2025.2"))
    repo = GitRepo(tmp_path / "repo")
    folder = f"clouds/{unique}"
    repo.commit({f"{folder}/cloud.yaml": _two_host_cloud(unique, kind, engines),
                 f"{folder}/services/api.yaml": _tcp_service("pa", "a", "2025.1"),
                 f"{folder}/services/worker.yaml": _tcp_service("pb", "b", "2025.1")}, "two hosts")

    def reconcile():
        return Controller(Source(repo.path), unique, state_dir=tmp_path / "state", engines=engines).reconcile("HEAD")

    def ids(host):
        return {c.name for c in engines[host].list_containers({"tidegate.cloud": unique})}
    try:
        first = reconcile()
        assert first.condition() == "Ready", first.render()
        before = {h: ids(h) for h in hosts}
        local.stop_engine(hosts["b"])                           # host b goes down (its data stays)
        repo.commit({f"{folder}/services/api.yaml": _tcp_service("pa", "a", "2025.2"),
                     f"{folder}/services/worker.yaml": _tcp_service("pb", "b", "2025.2")}, "both 2025.2")
        status = reconcile()
        assert status.condition() != "Ready" and "b" in status.unreachable, status.render()
        assert "a" not in status.unreachable and ids("a") != before["a"], status.render()   # host a proceeded
        assert status.services["api"]["running"][0]["release"] == "2025.2"
        farm.records[f"{kind}1"] = hosts["b"] = local.start_engine(kind, Path(hosts["b"].dir))   # back
        engines["b"] = connect(kind, hosts["b"].url, "b")
        status = reconcile()
        assert status.condition() == "Ready", status.render()
        assert status.services["worker"]["running"][0]["release"] == "2025.2" and not status.unreachable
    finally:
        if not local.pid_alive(hosts["b"].pid):                 # a failed assertion left it down
            farm.records[f"{kind}1"] = local.start_engine(kind, Path(hosts["b"].dir))
            engines["b"] = connect(kind, farm.records[f"{kind}1"].url, "b")
        _remove_cloud(engines, unique)


def test_two_hosts_on_one_machine_start_their_containers_at_the_same_moment(farm, kind, tmp_path, unique, base_image):
    """Two hosts of one cloud on one machine (private engines sharing the host's iptables):
    netavark names its chains after the network's name, so simultaneous starts on the two
    engines race to create the same chain and one fails ("Chain already exists"; 20 of 30
    measured). The executor retries it as a temporary error: every deployment converges."""
    from controller.reconcile import Controller
    from controller.source import Source
    from tests.validators.helpers import GitRepo

    engines = _two_host_engines(farm, kind, base_image, ("2025.1",))
    repo = GitRepo(tmp_path / "repo")
    folder = f"clouds/{unique}"
    services = {f"{folder}/services/s{i}{h}.yaml": _tcp_service(f"s{i}{h}", h, "2025.1") for h in engines for i in (1, 2)}
    repo.commit({f"{folder}/cloud.yaml": _two_host_cloud(unique, kind, engines), **services},
                "two hosts, two services each")
    for round_ in range(3):                   # each round creates the chains afresh (with the first container)
        try:
            status = Controller(Source(repo.path), unique, state_dir=tmp_path / f"state{round_}",
                                engines=engines).reconcile("HEAD")
            assert status.condition() == "Ready", status.render()
            assert all(len(e.list_containers({"tidegate.cloud": unique})) == 2 for e in engines.values())
        finally:
            _remove_cloud(engines, unique)    # netavark drops the chains with a network's last container


def test_unsigned_commit_is_refused_with_require_signed(web, tmp_path):
    """--require-signed: an unsigned upgrade is not applied (the containers stay as they
    are, status says why); the same change signed by a trusted SSH key is applied."""
    import yaml

    from controller.signing import Verifier

    from .gitrepo import allowed_signers, ssh_key, ssh_signing
    key = ssh_key(tmp_path / "keys", "operator")
    signers = allowed_signers(tmp_path / "allowed_signers", [("op@example.net", key)])
    ctl = web.controller(verify_commit=Verifier(allowed_signers=str(signers)))
    before = web.containers()
    unsigned = web.upgrade_web("2025.2")
    status = ctl.reconcile()
    assert status.last_applied_revision != unsigned and web.containers() == before
    assert any(f["rule"] == "source.unsigned" for f in status.findings), status.render()
    web.wait_serving("2025.1")
    data = web.service("web")
    web.repo.git(*ssh_signing(key), "commit", "-q", "-S", "--allow-empty", "-m", "web 2025.2, signed")
    signed = web.repo.git("rev-parse", "HEAD")
    status = ctl.reconcile()
    assert status.condition() == "Ready" and status.last_applied_revision == signed, status.render()
    assert data["release"] == "2025.2"
    web.wait_serving("2025.2")


def test_down_removes_containers_and_networks_and_keeps_volumes_unless_asked(web):
    import subprocess
    import sys
    assert web.put("/data", "keep me") == 200
    argv = [sys.executable, "-m", "controller.cli", "down", "--repo", str(web.repo.path), "--cloud", web.name,
            "--state-dir", str(web.state_dir), "--engine-url", f"{web.engine.kind}={web.engine.url}"]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and "named volumes kept" in proc.stdout, proc.stdout + proc.stderr
    assert web.containers() == {} and f"tidegate-{web.name}" not in web.engine.list_networks({})
    assert f"{web.name}_web-data" in web.engine.list_volumes({})
    assert web.reconcile().condition() == "Ready"              # up again: the data is still there
    web.wait_serving("2025.1")
    assert web.get("/data") == (200, "keep me"), web.front_logs()
    proc = subprocess.run(argv + ["--volumes"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert web.containers() == {} and f"{web.name}_web-data" not in web.engine.list_volumes({})


def test_plan_apply_status_commands_and_the_git_note(web):
    """What an operator types: plan (touches nothing), apply (refused while another
    controller holds the cloud), status --json, and the note on the applied commit."""
    import fcntl
    import subprocess
    import sys

    def tidegate(*args):
        return subprocess.run([sys.executable, "-m", "controller.cli", *args, "--cloud", web.name,
                               "--state-dir", str(web.state_dir)], capture_output=True, text=True, cwd=ROOT,
                              timeout=300)
    engine = ("--engine-url", f"{web.engine.kind}={web.engine.url}")
    up = web.upgrade_web("2025.2")
    before = web.containers()
    plan = tidegate("plan", "--repo", str(web.repo.path), *engine, "--json")
    assert plan.returncode == 0, plan.stderr
    doc = json.loads(plan.stdout)
    [[web_plan]] = doc["waves"]
    assert (web_plan["service"], web_plan["change"], web_plan["to_release"]) == ("web", "upgrade", "2025.2")
    assert doc["untouched"] == ["lb"] and web.containers() == before           # plan changed nothing
    text = tidegate("plan", "--repo", str(web.repo.path), *engine).stdout
    assert "web: upgrade 2025.1 → 2025.2" in text and "untouched: lb" in text

    lock = web.state_dir / web.name / "controller.lock"
    with open(lock, "a+") as held:                    # another controller manages the cloud
        fcntl.flock(held, fcntl.LOCK_EX)
        refused = tidegate("apply", "--repo", str(web.repo.path), *engine)
    assert refused.returncode == 2 and "already manages cloud" in refused.stderr, refused.stderr
    assert web.containers() == before

    applied = tidegate("apply", "--repo", str(web.repo.path), *engine)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    status = json.loads(tidegate("status", "--json").stdout)
    assert status["condition"] == "Ready" and status["last_applied_revision"] == up
    assert status["services"]["web"]["release"] == "2025.2"
    assert [r["healthy"] for r in status["services"]["web"]["running"]] == [True, True]
    note = json.loads(web.repo.git("notes", "--ref", "tidegate", "show", up))
    record = note["clouds"][web.name]
    assert record["result"] == "applied" and record["hosts"] == ["local"] and "web" in record["services"]


def test_a_manual_contract_keeps_the_window_open_until_the_operator_runs_it(web):
    import subprocess
    import sys
    cloud_yaml = web.folder / "cloud.yaml"
    web.repo.commit({f"clouds/{web.name}/cloud.yaml": cloud_yaml.read_text() + "policy: {contract: manual}\n"},
                    "contract phases by hand")
    assert web.reconcile().condition() == "Ready"
    data = web.service("web")
    data.update(release="2025.2", image="localhost/tidegate/web:2025.2",
                environment={**data["environment"], "RELEASE": "2025.2"})
    data["upgrade"]["jobs"] = {"expand": [{"command": ["sh", "-c", "echo expanded > /data/value"]}],
                               "contract": [{"command": ["sh", "-c", "echo contracted > /data/value"]}]}
    up = web.commit_service("web", data, "web 2025.2 with migration phases")
    status = web.reconcile()
    assert status.condition() == "Ready" and status.pending_contract == {"web": status.services["web"]["hash"]}
    assert "rollback window open" in status.render()
    assert web.get("/data") == (200, "expanded\n"), web.front_logs()
    assert web.reconcile(drift_check=True).drift_repairs == 0          # settled: nothing owed by itself

    def contract():
        return subprocess.run([sys.executable, "-m", "controller.cli", "contract", "--repo", str(web.repo.path),
                               "--cloud", web.name, "--service", "web", "--state-dir", str(web.state_dir),
                               "--engine-url", f"{web.engine.kind}={web.engine.url}"],
                              capture_output=True, text=True, cwd=ROOT, timeout=300)
    done = contract()
    assert done.returncode == 0 and "contract phase ran" in done.stdout, done.stdout + done.stderr
    assert web.get("/data") == (200, "contracted\n"), web.front_logs()
    again = contract()
    assert again.returncode == 1 and "no contract phase is owed (it ran at" in again.stderr, again.stderr
    note = json.loads(web.repo.git("notes", "--ref", "tidegate", "show", up))
    assert note["clouds"][web.name]["contract"] == ["web"]          # the rollback window is closed


def test_a_failed_contract_stalls_instead_of_converging_back_and_can_be_retried(web):
    """Contract started = journalled before the job runs. Before: a failed contract job was
    answered by converging back to 2025.1 — onto a database the job may have half-contracted."""
    import subprocess
    import sys
    data = web.service("web")
    data.update(release="2025.2", image="localhost/tidegate/web:2025.2",
                environment={**data["environment"], "RELEASE": "2025.2"})
    # the contract fails the first time, half-way (it wrote something), and succeeds when retried
    data["upgrade"]["jobs"] = {"expand": [{"command": ["sh", "-c", "echo expanded > /data/value"]}],
                               "contract": [{"command": ["sh", "-c", "if [ -e /data/tried ]; then echo contracted "
                                             "> /data/value; else touch /data/tried; echo half > /data/value; "
                                             "exit 3; fi"]}]}
    up = web.commit_service("web", data, "web 2025.2 whose contract fails once")
    status = web.reconcile()
    assert (status.condition(), status.reason, status.failed_revision) == ("Stalled", "ContractFailed", up), \
        status.render()
    assert status.contract_started["web"]["revision"] == up and "web" in status.pending_contract
    assert "did not finish" in status.render()
    web.wait_serving("2025.2")                           # NOT converged back to 2025.1
    assert web.get("/data") == (200, "half\n"), web.front_logs()
    again = web.reconcile()                              # the failed commit is not retried by itself
    assert again.reason == "ContractFailed" and again.history[0]["result"] == "failed"

    done = subprocess.run([sys.executable, "-m", "controller.cli", "contract", "--repo", str(web.repo.path),
                           "--cloud", web.name, "--service", "web", "--state-dir", str(web.state_dir),
                           "--engine-url", f"{web.engine.kind}={web.engine.url}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert web.get("/data") == (200, "contracted\n"), web.front_logs()
    finished = web.reconcile()                           # the rollout of `up` completes
    assert (finished.condition(), finished.reason, finished.last_applied_revision) == ("Ready", "Applied", up), \
        finished.render()
    assert finished.contract_started == {} and finished.pending_contract == {}


def test_a_deleted_state_dir_is_rebuilt_from_the_labels_of_what_runs(web):
    """Before: no status.json meant "nothing applied", so a skip-level jump was judged as a
    new cloud and applied. Now the base is the commit on the running replicas' labels."""
    import shutil
    shutil.rmtree(web.state_dir)
    jump = web.upgrade_web("2026.2")                         # 2025.1 → 2026.2: not a supported upgrade
    status = web.reconcile()
    assert (status.condition(), status.reason, status.last_attempted_revision) == \
        ("Stalled", "ValidationFailed", jump), status.render()
    assert "transition.upgrade-path" in {f["rule"] for f in status.findings}
    web.wait_serving("2025.1")                               # what ran keeps running
