"""`atlasrl up`: one command runs a whole training run on this machine.

Order: run directory and resolved config -> model (tiny, random weights, unless
given) -> coordinator -> env servers, memory, learner -> held-out eval of the
initial policy -> actors -> live display until a limit (duration, env steps,
target success) or Ctrl-C -> run state STOPPING -> held-out eval of the final
policy -> everything stopped (SIGTERM, wait, SIGKILL stragglers) -> plots and
summary.json in the run directory.
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import stat
import sys
import time
from pathlib import Path

from atlasrl.clients.coordinator import CoordinatorClient
from atlasrl.config import RunConfig
from atlasrl.lifeline import lifeline_argv
from atlasrl.up import display
from atlasrl.up.accounting import reconcile, run_files
from atlasrl.up.atlases import save_atlas_pngs
from atlasrl.up.evaluation import export_checkpoint, latest_model_dir, run_eval
from atlasrl.up.plan import HOST, Plan, build_plan, role_available
from atlasrl.up.plots import plot_learning
from atlasrl.up.progress import curve, from_status, recent_success
from atlasrl.up.rundir import RunDir
from atlasrl.up.security import RunSecurity
from atlasrl.up.supervisor import RoleFailed, Supervisor

log = logging.getLogger("atlasrl.up")


async def ensure_model(cfg: RunConfig, rd: RunDir) -> Path:
    if cfg.model.path is not None:
        if not (Path(cfg.model.path) / "config.json").is_file():
            raise RoleFailed(f"model.path {cfg.model.path} is not a HF model directory (no config.json)")
        return Path(cfg.model.path).resolve()
    extra = {} if cfg.model.max_pixels is None else {"max_pixels": cfg.model.max_pixels}
    code = ("import sys; from atlasrl.models.tiny import tiny_model_path; "
            f"print(tiny_model_path(arch={cfg.model.arch!r}, seed={cfg.run.seed}, **{extra!r}))")
    with open(rd.logs / "model.log", "ab") as logf:
        proc = await asyncio.create_subprocess_exec(*lifeline_argv(os.getpid(), [sys.executable, "-c", code]),
                                                    stdout=asyncio.subprocess.PIPE, stderr=logf)
        stdout, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RoleFailed(f"building the tiny model failed; see {rd.logs / 'model.log'}")
    return Path(stdout.decode().strip().splitlines()[-1])


class UpRun:
    """One `atlasrl up` invocation; ``await UpRun(cfg).run()`` returns the summary dict."""

    def __init__(self, cfg: RunConfig, *, console=None, fault_hook=None):
        self.cfg = cfg
        self.rd = RunDir.create(cfg)
        self.console = console
        # run.secure: every role gets TLS + mTLS + its token; this process's own channels act as admin.
        self.security = RunSecurity.create(self.rd.root / "pki", HOST) if cfg.run.secure else None
        self.channels = self.security.channel_config() if self.security else None
        self.sup = Supervisor(self.rd.logs, max_restarts=cfg.run.max_restarts, stop_timeout_s=cfg.run.stop_timeout_s,
                              channel_config=self.channels)
        self.plan: Plan | None = None
        self.client: CoordinatorClient | None = None
        self.interrupted = asyncio.Event()
        self.fault_hook = fault_hook   # tests: async fn(run) called once the actors run
        self.summary: dict = {"run_dir": str(self.rd.root)}
        self.last_status = None

    # --- phases -----------------------------------------------------------------
    async def run(self) -> dict:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
        # A closed terminal or a dropped ssh session is a clean stop too, unless started with SIGHUP ignored (nohup).
        hangup = signal.getsignal(signal.SIGHUP) != signal.SIG_IGN
        if hangup:
            loop.add_signal_handler(signal.SIGHUP, self._on_hangup)
        t0 = time.time()
        try:
            model_dir = await ensure_model(self.cfg, self.rd)
            self.plan = build_plan(self.cfg, self.rd, str(model_dir), self.security)
            for role in self.plan.skipped:
                self.sup.note(f"role {role} is not available in this install: running without it")
            self.rd.write_json("processes.json", {p.name: p.argv for p in self.plan.all()})
            self.rd.write_json("prometheus-targets.json", prometheus_targets(self.plan))
            await self.sup.start(self.plan.coordinator)
            self.client = CoordinatorClient(self.plan.coordinator_address, channel_config=self.channels)
            await asyncio.gather(*(self.sup.start(p) for p in self.plan.stages[0]))
            self.summary["eval_before"] = await self._eval("before", model_dir)
            if not self.interrupted.is_set():
                await asyncio.gather(*(self.sup.start(p) for p in self.plan.stages[1]))
                self.summary["startup_s"] = round(time.time() - t0, 1)
                await self._monitor(time.time())  # limits count from the start of training
            await self._stop_training()
            await self._atlases()
            final_model = await export_checkpoint(self.rd.checkpoints, self.rd.root / "final-model", self.rd.logs / "export.log") \
                or latest_model_dir(self.rd.checkpoints)
            self.summary["final_model"] = str(final_model) if final_model else None
            if final_model is not None and not self.interrupted.is_set():
                self.summary["eval_after"] = await self._eval("after", final_model)
        except RoleFailed as e:
            self.sup.note(f"run aborted: {e}")
            self.summary["error"] = str(e)
        finally:
            await self._collect_status()
            await self.sup.stop_all()
            for sig in (signal.SIGINT, signal.SIGTERM, *((signal.SIGHUP,) if hangup else ())):
                loop.remove_signal_handler(sig)
        self.summary.update(self._outcome(time.time() - t0))
        self.summary["accounting"] = self._accounting()
        self._plots()
        self.rd.write_json("summary.json", self.summary)
        return self.summary

    def _on_signal(self) -> None:
        if self.interrupted.is_set():  # a second Ctrl-C: no more waiting
            self.sup.stop_timeout_s = 1.0
        self.interrupted.set()
        self.sup.note("interrupted: stopping cleanly (Ctrl-C again to hurry)")

    def _on_hangup(self) -> None:
        """SIGHUP: stop as on Ctrl-C. A terminal that hung up fails every write with EIO (the display, the
        closing summary): point such outputs at /dev/null first, so the stop itself runs to the end."""
        _detach_hung_up_outputs()
        self._on_signal()

    async def _eval(self, label: str, model_dir) -> dict | None:
        if self.cfg.run.eval_episodes == 0 or not self.plan.envserver_addresses or not role_available("actor"):
            return None
        task = asyncio.create_task(run_eval(self.cfg, self.rd, label, model_dir, self.plan.envserver_addresses,
                                            self.rd.logs / f"eval-{label}.log",
                                            role_flags=self.security.role_flags("actor") if self.security else None))
        interrupted = asyncio.create_task(self.interrupted.wait())
        await asyncio.wait({task, interrupted}, return_when=asyncio.FIRST_COMPLETED)
        interrupted.cancel()
        if not task.done():  # Ctrl-C: the eval is not worth waiting for
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return None
        report = task.result()
        if report is None:
            self.sup.note(f"eval {label} failed; see {self.rd.logs / f'eval-{label}.log'}")
        return report

    async def _monitor(self, t0: float) -> None:
        c = self.cfg.run
        limits = " / ".join(x for x in (f"{c.duration_s:.0f}s" if c.duration_s else "",
                                          f"{c.max_env_steps:,} steps" if c.max_env_steps else "") if x)
        live = None
        if self.console is not None and c.display and self.console.is_terminal:
            from rich.live import Live

            live = Live(console=self.console, auto_refresh=False, transient=False)
            live.start()
        fault_task = asyncio.create_task(self.fault_hook(self)) if self.fault_hook else None
        last_line = 0.0
        try:
            while not self.interrupted.is_set() and not self.sup.failed.is_set():
                st = await self._collect_status()
                elapsed = time.time() - t0
                if st is not None:
                    samples = from_status(st.history)
                    h = display.headline(st, samples, elapsed)
                    self.rd.append_jsonl("progress.jsonl", {"time": time.time(), **{k: _finite(v) for k, v in h.items()}})
                    if live is not None:
                        live.update(display.render(st, samples, self.sup, self.rd.root, elapsed, limits), refresh=True)
                    elif self.console is not None and time.time() - last_line >= 5:
                        self.console.print(display.line(st, samples, elapsed))
                        last_line = time.time()
                    reason = self._limit_reached(st, samples, elapsed)
                    if reason:
                        self.sup.note(f"stopping: {reason}")
                        self.summary["stop_reason"] = reason
                        break
                if fault_task is not None and fault_task.done():
                    if fault_task.exception():
                        raise fault_task.exception()
                    self.summary["stop_reason"] = "fault script finished"
                    break
                try:
                    await asyncio.wait_for(self.interrupted.wait(), 1.0)
                except TimeoutError:
                    pass
        finally:
            if live is not None:
                live.stop()
            if fault_task is not None and not fault_task.done():
                fault_task.cancel()
        if self.sup.failed.is_set():
            raise RoleFailed("a role exhausted its restarts; see the logs")
        self.summary.setdefault("stop_reason", "interrupted")

    def _limit_reached(self, st, samples, elapsed: float) -> str:
        c = self.cfg.run
        steps = st.counters.get("actor.env_steps", 0)
        if c.duration_s and elapsed >= c.duration_s:
            return f"duration {c.duration_s:.0f}s reached"
        if c.max_env_steps and steps >= c.max_env_steps:
            return f"{steps:,} env steps >= max_env_steps {c.max_env_steps:,}"
        if c.target_success:
            rate, n = recent_success(samples, 64)
            if n >= 64 and rate >= c.target_success:
                return f"training success {rate:.2f} over {n} episodes >= target {c.target_success}"
        return ""

    async def _stop_training(self) -> None:
        """Tell every role to stop (they checkpoint and exit), then stop actors and the learner."""
        if self.client is not None:
            try:
                await self.client.set_run_state("stopping", reason="atlasrl up: limit reached or interrupted")
            except Exception as e:  # noqa: BLE001 - the supervisor still stops everything
                self.sup.note(f"could not set run state STOPPING: {e}")
        await self._collect_status()
        names = [p.name for p in self.plan.stages[1]] + [p.name for p in self.plan.stages[0] if p.role == "learner"]
        await self.sup.stop_all_of(names)

    async def _atlases(self) -> None:
        if not self.plan.memory_address or "memory" not in self.sup.processes or not self.sup.alive("memory"):
            return
        try:
            paths = await save_atlas_pngs(self.plan.memory_address, self.rd.plots, channel_config=self.channels)
            self.summary["atlas_plots"] = [str(p) for p in paths]
        except Exception as e:  # noqa: BLE001 - plots must not fail the run
            self.sup.note(f"atlas plots failed: {e}")

    async def _collect_status(self):
        if self.client is None:
            return self.last_status
        try:
            self.last_status = await self.client.status(include_dead=True, history_points=10000)
        except Exception as e:  # noqa: BLE001 - coordinator restarting; keep the last one
            log.info("status unavailable: %s", e)
        return self.last_status

    def _outcome(self, wall_s: float) -> dict:
        st = self.last_status
        out = {"wall_s": round(wall_s, 1), "restarts": {p.name: p.restarts for p in self.sup.processes.values()},
               "events": [f"{time.strftime('%H:%M:%S', time.localtime(t))} {e}" for t, e in self.sup.events]}
        if st is not None:
            out["counters"] = dict(st.counters)
            out["policy_version"] = display.policy_version(st)
            rate, _n = recent_success(from_status(st.history), 64)
            out["training_success_recent"] = _finite(rate)
            from atlasrl.actors.critic_reward import run_summary

            out["critic"] = run_summary(out["counters"], wall_s)   # None without reward.source=critic
        return out

    def _accounting(self) -> dict | None:
        """Every episode's outcome, from the actors' spools and the learner's ledger (everything has stopped)."""
        spools, ledger = run_files(self.rd.root)
        if not spools:
            return None
        try:
            return reconcile(spools, ledger).as_dict()
        except Exception as e:  # noqa: BLE001 - the accounting must not fail the run's summary
            self.sup.note(f"episode accounting failed: {e}")
            return None

    def _plots(self) -> None:
        if self.last_status is None:
            return
        try:
            import matplotlib  # noqa: F401  (the 'plots' extra)
        except ImportError:
            self.sup.note("no plots: matplotlib is missing (pip install 'atlasrl[plots]')")
            return
        points = curve(from_status(self.last_status.history), min_episodes=16)
        if not points:
            return
        before = (self.summary.get("eval_before") or {}).get("success_rate")
        after = (self.summary.get("eval_after") or {}).get("success_rate")
        self.summary["plot"] = str(plot_learning(points, self.rd.plots / "learning.png", title=self.cfg.run.name,
                                                 baseline=before, final=after))


def prometheus_targets(plan: Plan) -> list[dict]:
    """file_sd targets for docker-free-deploy/prometheus.yml: one per role process, labelled role and name."""
    roles = {p.name: p.role for p in plan.all()}
    return [{"targets": [address], "labels": {"role": roles.get(name, name), "name": name}}
            for name, address in sorted(plan.metrics_targets.items())]


def _detach_hung_up_outputs() -> None:
    """Redirect stdout/stderr to /dev/null where they are a terminal that hung up (a character device
    that no longer answers as a tty); pipes, files and a live terminal are left alone."""
    devnull = None
    for fd in (1, 2):
        try:
            if stat.S_ISCHR(os.fstat(fd).st_mode) and not os.isatty(fd):
                devnull = os.open(os.devnull, os.O_WRONLY) if devnull is None else devnull
                os.dup2(devnull, fd)
        except OSError:
            pass
    if devnull is not None:
        os.close(devnull)


def _finite(v):
    return None if isinstance(v, float) and math.isnan(v) else v


async def up(cfg: RunConfig, console=None, fault_hook=None) -> dict:
    return await UpRun(cfg, console=console, fault_hook=fault_hook).run()
