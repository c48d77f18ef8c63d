"""One chaos run: private stack, real processes, load, faults, then the judge.

:func:`run` prints the plan (seed, sizes, the fault schedule), starts the private
infrastructure and the processes, sends the load while the faults happen, waits (bounded) for
every accepted generation to end, collects the evidence, prints the table and returns the
verdict. Whatever happens (a failure, Ctrl-C, SIGTERM), every process and the private stack are
stopped; the logs stay in ``out``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from runway_sim.testing import fast_scenario
from vidgen_chaos import diagnosis, evidence, webhooks
from vidgen_chaos.faults import PROCESSES, FaultRunner, Size, schedule
from vidgen_chaos.invariants import Facts, Knobs, Verdict, judge
from vidgen_chaos.load import MODERATION_WORD, Load, plan
from vidgen_chaos.report import faults_applied, full_list, render
from vidgen_chaos.stack import ROOT, PrivateStack, free_port
from vidgen_chaos.supervisor import Proc, Supervisor
from vidgen_generator.settings import GeneratorSettings
from vidgen_media.settings import MediaSettings
from vidgen_runway.catalog import MODELS

RUN_S, QUEUE_S = 1.0, 0.2  # the simulator's task timings (fast_scenario)
# Settings the run gives the services (time is compressed: tasks take a second, not a minute).
SERVICE_ENV: dict[str, dict[str, str]] = {
    "*": {"RUNWAY_TIMEOUT_S": "10", "VIDGEN_LOG_LEVEL": "INFO"},
    "generator": {"VIDGEN_INTENT_STALE_S": "30"},
    "poller": {
        "VIDGEN_DURATION_PRIORS_S": json.dumps(dict.fromkeys(MODELS, RUN_S)),
        "VIDGEN_DEFAULT_DURATION_PRIOR_S": str(RUN_S),
        "VIDGEN_DEADLINE_S": "60",
    },
    "notifier": webhooks.NOTIFIER_ENV,
}
WEBHOOKS_SETTLE_S = 150.0  # after every generation ended, how long the webhooks have to arrive
INHERITED_PREFIXES = ("VIDGEN_", "KAFKA_", "S3_", "DATABASE_", "RUNWAY", "OTEL_", "AWS_")


@dataclass
class Config:
    size: Size
    seed: int
    out: Path
    signal: str = "kill"  # kill | term: how processes are stopped
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)  # service → env
    keep_stack: bool = False  # keep the private data directories when an invariant breaks

    def env_for(self, service: str) -> dict[str, str]:
        env: dict[str, str] = {}
        for scope in ("*", service):
            env |= SERVICE_ENV.get(scope, {}) | self.overrides.get(scope, {})
        return env

    def knobs(self) -> Knobs:
        gen, med = self.env_for("generator"), self.env_for("media")
        poller, common = self.env_for("poller"), self.env_for("*")

        def pick(env: dict[str, str], var: str, default: Any) -> float:
            return float(env.get(var, default))

        gfields, mfields = GeneratorSettings.model_fields, MediaSettings.model_fields
        return Knobs(
            signal=self.signal,
            runway_timeout_s=pick(common | gen, "RUNWAY_TIMEOUT_S", 30.0),
            max_concurrent_submissions=int(
                pick(
                    gen,
                    "VIDGEN_MAX_CONCURRENT_SUBMISSIONS",
                    gfields["max_concurrent_submissions"].default,
                )
            ),
            max_attempts=int(pick(gen, "VIDGEN_MAX_ATTEMPTS", gfields["max_attempts"].default)),
            download_retries=int(
                pick(med, "VIDGEN_DOWNLOAD_RETRIES", mfields["download_retries"].default)
            ),
            url_refreshes=int(
                pick(med, "VIDGEN_MAX_URL_REFRESHES", mfields["max_url_refreshes"].default)
            ),
            deadline_s=pick(poller, "VIDGEN_DEADLINE_S", 900.0),
        )


def sim_scenario(seed: int) -> dict[str, Any]:
    limits = {m: {"max_concurrent": 8, "max_daily": None} for m in MODELS}
    scenario: dict[str, Any] = fast_scenario(
        run_s=RUN_S,
        queue_s=QUEUE_S,
        seed=seed,
        org={"models": limits},
        failure_rates={"INTERNAL.BAD_OUTPUT.CODE01": 0.03},
        moderation_words=[MODERATION_WORD],
    )
    return scenario


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(INHERITED_PREFIXES)}


def build_procs(
    cfg: Config,
    infra_env: dict[str, str],
    sim_port: int,
    gw_port: int,
    logs: Path,
    notifier_port: int | None = None,
) -> list[Proc]:
    python = sys.executable
    base = {**_clean_env(), **infra_env, "PYTHONUNBUFFERED": "1"}
    sim_env = {
        **base,
        "RUNWAY_SIM_SCENARIO": json.dumps(sim_scenario(cfg.seed)),
        "RUNWAY_SIM_RENDER_HEIGHT": "144",
        "RUNWAY_SIM_RENDER_FPS": "8",
        "RUNWAY_SIM_ACCESS_LOG": "false",
        "RUNWAY_SIM_LOG_LEVEL": "warning",
    }
    procs = [
        Proc(
            "runway-sim",
            [python, "-m", "runway_sim", "--host", "127.0.0.1", "--port", str(sim_port)],
            sim_env,
            f"http://127.0.0.1:{sim_port}/_sim/health",
            logs / "runway-sim.log",
        )
    ]
    notifier_port = notifier_port or free_port()
    for name in PROCESSES:
        service, _, relay = name.partition("-")
        port = {"gateway": gw_port, "notifier": notifier_port}.get(name) or free_port()
        env = {
            **base,
            "RUNWAYML_BASE_URL": f"http://127.0.0.1:{sim_port}",
            "VIDGEN_NOTIFIER_URL": f"http://127.0.0.1:{notifier_port}",
            **cfg.env_for(service),
            "VIDGEN_ROLE": "relay" if relay else "worker",
            "VIDGEN_HTTP_PORT": str(port),
        }
        ready = f"http://127.0.0.1:{port}/readyz"
        procs.append(
            Proc(name, [python, "-m", f"vidgen_{service}"], env, ready, logs / f"{name}.log")
        )
    return procs


def header(cfg: Config, faults: list[Any], infra: PrivateStack) -> str:
    s = cfg.size
    control = "infra.sh sub-commands"
    lines = [
        f"chaos run: size {s.name}, seed {cfg.seed}, processes stopped by "
        f"{'kill -9' if cfg.signal == 'kill' else 'SIGTERM'}",
        f"  {s.generations} generations over {s.load_s:.0f} s, {s.per_user} per user; "
        f"settle {s.settle_s:.0f} s; logs in {cfg.out}",
        f"  infrastructure control: {control}; the broker keeps its data in a store of its own, "
        "apart from the services' S3",
        f"  service settings: {json.dumps(SERVICE_ENV)}, overrides {json.dumps(cfg.overrides)}",
        f"  schedule ({len(faults)} faults):",
    ]
    lines += ["    " + f.describe() for f in faults]
    return "\n".join(lines)


async def run(cfg: Config) -> Verdict:
    cfg.out.mkdir(parents=True, exist_ok=True)
    logs = cfg.out / "logs"
    logs.mkdir(exist_ok=True)
    local = Path(tempfile.mkdtemp(prefix="vidgen-chaos-"))
    infra = PrivateStack(local, logs / "infra.log")
    faults = schedule(cfg.seed, cfg.size, cfg.signal)
    print(header(cfg, faults, infra), flush=True)
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if main is not None:
        loop.add_signal_handler(signal.SIGTERM, main.cancel)
    supervisor: Supervisor | None = None
    receiver: webhooks.ChaosReceiver | None = None
    failed = True  # until a verdict says otherwise
    started = time.monotonic()
    try:
        await asyncio.to_thread(infra.up)
        sim_port, gw_port = free_port(), free_port()
        procs = build_procs(cfg, infra.env(), sim_port, gw_port, logs)
        receiver = webhooks.ChaosReceiver(cfg.seed)
        receiver.start()
        hooks = webhooks.WebhookEvidence()
        supervisor = Supervisor(procs, cwd=ROOT)
        await supervisor.start(ready_within_s=240)
        print(
            f"[{time.monotonic() - started:5.0f} s] stack ready; load and faults start", flush=True
        )
        sim_url, gateway = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{gw_port}"
        knobs = cfg.knobs()
        runner = FaultRunner(supervisor, infra, sim_url, knobs.runway_timeout_s)
        await runner.detect()
        load = Load(gateway)

        async def on_user(client: httpx.AsyncClient, user: str, headers: dict[str, str]) -> None:
            await webhooks.register(client, receiver, user, int(user[-3:]), headers, hooks)

        load.on_user = on_user
        planned = plan(
            cfg.seed, cfg.size.generations, cfg.size.per_user, cfg.size.load_s, cfg.size.moderated
        )
        t0 = loop.time()
        bound = cfg.size.load_s + 240
        await asyncio.wait_for(asyncio.gather(load.run(planned, t0), runner.run(faults, t0)), bound)
        print(
            f"[{time.monotonic() - started:5.0f} s] load sent, faults done; waiting for the end",
            flush=True,
        )
        views = await load.statuses(within_s=cfg.size.settle_s)
        print(f"[{time.monotonic() - started:5.0f} s] waiting for the webhooks", flush=True)
        await _settle_webhooks(load, gateway, views, receiver, hooks)
        print(f"[{time.monotonic() - started:5.0f} s] collecting evidence", flush=True)
        ev = await collect(infra, sim_url, gateway, load, views)
        ev.webhooks = hooks
        ev.not_ready = await supervisor.not_ready(within_s=60)
        ev.broker_errors = _count_errors(infra.logs()["tansu.log"])
        facts = Facts(load.outcomes, views, ev, runner.applied, supervisor.exits, knobs)
        verdict = judge(facts)
        head = (
            f"\nchaos result: size {cfg.size.name}, seed {cfg.seed}, signal {cfg.signal}, "
            f"{time.monotonic() - started:.0f} s; create_then_error "
            f"{'available' if runner.create_then_error else 'not available in this simulator'}; "
            f"client retries {dict(sorted(load.retries.items()))}"
        )
        ce_ids = {r.ce_id for rs in ev.records.values() for r in rs}
        notes, backlog = await _diagnose(infra, list(verdict.suspects)[:200], ce_ids)
        head += f"\noutbox rows at the end (diagnosis, services' tables): {backlog}"
        text = render(verdict, head, supervisor.lines_about, notes)
        failed = bool(verdict.broken)
        more = "\n\n".join([faults_applied(runner.applied), full_list(verdict, notes)])
        (cfg.out / "report.txt").write_text(f"{text}\n\n{more}\n")
        print(text, flush=True)
        print(f"\nfull report (faults as applied, every finding): {cfg.out / 'report.txt'}")
        return verdict
    finally:
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(signal.SIGTERM)
        if supervisor is not None:
            await asyncio.shield(supervisor.stop())
        if receiver is not None:
            receiver.stop()
        await asyncio.shield(asyncio.to_thread(infra.down))
        for name, path in infra.logs().items():
            with contextlib.suppress(OSError):
                shutil.copy(path, logs / name)
        if cfg.keep_stack and failed:
            print(f"private data directories kept for inspection: {local}", flush=True)
        else:
            infra.remove()
        print(f"stopped everything; logs in {logs}", flush=True)


async def collect(
    infra: PrivateStack, sim_url: str, gateway: str, load: Load, views: dict[str, dict[str, Any]]
) -> evidence.Evidence:
    ev = evidence.Evidence()
    env = infra.env()
    ev.records, starts = await evidence.read_topics(env["KAFKA_BOOTSTRAP_SERVERS"])
    ev.broker_anomalies = evidence.anomalies(ev.records, starts)
    # the judge reads faults-free: switch every simulator fault off first
    async with httpx.AsyncClient(base_url=sim_url, timeout=30) as sim:
        off = {"download_faults": {"next_n": 0}, "output_url_ttl_s": 300.0}
        (await sim.put("/_sim/scenario", json=off)).raise_for_status()
    ev.sim_tasks, ev.counters = await evidence.sim_state(sim_url)
    completions = {str(r.data.get("generationId")): r.data for r in ev.of("generation.completed")}
    task_of = {
        str(r.data.get("generationId")): str(r.data.get("runwayTaskId"))
        for r in ev.of("generation.video-ready")
    }
    async with (
        httpx.AsyncClient(timeout=30) as plain,
        httpx.AsyncClient(base_url=sim_url, timeout=30) as sim,
    ):
        for gid, view in views.items():
            if view.get("status") == "completed":
                fresh = await _fresh_view(load, gateway, gid) or view
                ev.videos[gid] = await evidence.check_video(
                    plain, sim, fresh, completions.get(gid), task_of.get(gid)
                )
    try:
        ev.multipart = await asyncio.to_thread(
            evidence.unfinished_uploads,
            env["S3_ENDPOINT"],
            env["S3_ACCESS_KEY"],
            env["S3_SECRET_KEY"],
            "vidgen",
        )
    except Exception as exc:
        ev.multipart_error = repr(exc)[:200]
    return ev


async def _fresh_view(load: Load, gateway: str, gid: str) -> dict[str, Any] | None:
    """The status view again (its presigned URL is fresh)."""
    user = next(o.planned.user for o in load.outcomes if o.generation_id == gid)
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as client:
        r = await client.get(
            f"/api/videos/status/{gid}", headers={"Authorization": f"Bearer {load.token(user)}"}
        )
    return r.json() if r.status_code == 200 else None


async def _settle_webhooks(
    load: Load,
    gateway: str,
    views: dict[str, dict[str, Any]],
    receiver: webhooks.ChaosReceiver,
    hooks: webhooks.WebhookEvidence,
) -> None:
    """Wait (bounded) until the receiver acknowledged every terminal event for every
    enabled endpoint, then take its records and the endpoints as the API lists them."""
    users = sorted({o.planned.user for o in load.outcomes})
    hooks.users_of = {o.generation_id: o.planned.user for o in load.outcomes if o.generation_id}
    statuses = {gid: str(view.get("status")) for gid, view in views.items()}
    await webhooks.list_endpoints(gateway, users, load.token, hooks)
    loop = asyncio.get_running_loop()
    end = loop.time() + WEBHOOKS_SETTLE_S
    while loop.time() < end:
        hooks.hits = list(receiver.hits)
        if not webhooks.missing(hooks, statuses):
            break
        await asyncio.sleep(2)
    await asyncio.sleep(3)  # what was in flight lands (a duplicate would show now)
    hooks.endpoints = {}
    await webhooks.list_endpoints(gateway, users, load.token, hooks)
    hooks.hits = list(receiver.hits)


def _count_errors(log: Path) -> int:
    try:
        return sum("ERROR" in line for line in log.read_text(errors="replace").splitlines())
    except OSError:
        return -1


async def _diagnose(
    infra: PrivateStack, gids: list[str], ce_ids: set[str]
) -> tuple[dict[str, list[str]], dict[str, int]]:
    try:
        url = infra.env()["DATABASE_URL"]
        return await asyncio.to_thread(diagnosis.explain_generations, url, gids, ce_ids)
    except Exception as exc:  # diagnosis is a help, never a verdict
        return {gid: [f"(no diagnosis: {exc!r})"[:200]] for gid in gids}, {}
