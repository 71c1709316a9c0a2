"""The worker process of one job: ``python -m flagvision.jobs.worker <job-id> <workspace>``.

Started by :func:`flagvision.jobs.queue.dispatch` after it claimed the job (state ``running``). The
worker

* beats a heartbeat into the store every second from a thread of its own (progress 0–1 and a
  line of text), which also brings back the cancel flag;
* runs the job: a training run (``runs.execute_run`` with a progress reporter and a stop check
  after every batch), a study (``flagvision.studies.runner.run_study_job``), the download of
  VGG-16's weights (``flagvision.models.weights.download_weights``, progress in MB) or the flag
  finder's training (``flagvision.models.finder.build_finder``, progress per rendered scene and epoch)
  or the built-in data (``flagvision.synthetic.builtin.ensure_builtin``, progress per rendered image;
  then, if asked, it queues the default models);
* stops cleanly on cancel: the store flag or SIGTERM set the same stop event; training ends after
  the current batch, between writes, and the best checkpoint stays. Before training has started
  (importing torch, decoding images) there is nothing to keep, so SIGTERM aborts at once;
* records the end itself: succeeded, cancelled or failed (message in the job and run rows,
  traceback in the log, which is this process's stdout and stderr);
* starts the next queued job (``jobs.dispatch``), so the queue moves on with no app open.

Only light modules are imported before the heartbeat runs: importing torch takes seconds, and the
reaper must not take a slow start for a dead worker.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from flagvision.errors import describe
from flagvision.jobs import queue as jobs
from flagvision.jobs.store import Store, StoreError
from flagvision.workspace import Workspace

HEARTBEAT_S = 1.0  # store heartbeat period; also the cancel-flag poll, so cancel lands in ~1 s
STOP_CHECK_S = 0.5  # how often training looks at the stop event (a cheap in-memory check)


class _Cancelled(BaseException):
    """Raised by the signal handler before training starts. A BaseException so that no
    ``except Exception`` on the way (e.g. around a cache read) swallows it."""


class _Worker:
    def __init__(self, ws: Workspace, store: Store, job: dict[str, Any]):
        self.ws, self.store, self.job = ws, store, job
        self.job_id: int = job["id"]
        self.stop = threading.Event()
        self.progress: float = 0.0
        self.text: str = "starting"
        self.phase = "prepare"  # prepare → work → finish; decides what SIGTERM may interrupt
        self._done = threading.Event()
        self._beat_error_shown = False
        self._run_recorded = False
        self._raised = False

    # -- heartbeat and signals --------------------------------------------------------------

    def report(self, progress: float, text: str) -> None:
        """Progress 0–1 and a short line for the UI; sent with the next heartbeat."""
        self.progress, self.text = float(progress), str(text)

    def should_stop(self) -> bool:
        return self.stop.is_set()

    def _beat_once(self) -> None:
        try:
            if self.store.heartbeat(self.job_id, self.progress, self.text):
                self.stop.set()
        except (
            StoreError,
            sqlite3.Error,
            OSError,
        ) as exc:  # a locked database must not kill the worker; beat again later
            if not self._beat_error_shown:
                print(f"heartbeat failed (will retry): {exc}", file=sys.stderr, flush=True)
                self._beat_error_shown = True

    def _heartbeat_loop(self) -> None:
        while not self._done.wait(HEARTBEAT_S):
            self._beat_once()

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stop.set()
        print(f"received {signal.Signals(signum).name}: stopping", file=sys.stderr, flush=True)
        if self.phase == "prepare" and not self._raised:
            self._raised = True  # once: a second signal must not interrupt the clean-up
            raise _Cancelled("cancelled before it started")
        # During training the stop event is enough: fit ends after the current batch, never in the
        # middle of a checkpoint or store write.

    # -- the job ------------------------------------------------------------------------------

    def handlers(self) -> dict[str, Callable[[], tuple[str, dict[str, Any] | None]]]:
        """The work of each job kind (:data:`flagvision.jobs.schema.JOB_KINDS`)."""
        return {"train": self._train, "study": self._study, "weights": self._weights, "finder": self._finder,
                "builtin": self._builtin, "compare": self._compare}  # fmt: skip

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        beat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        state, result = "failed", None
        outcome: BaseException | None = None
        try:
            try:
                self._beat_once()
                beat.start()
                if self.stop.is_set():  # cancelled between the claim and this start
                    raise _Cancelled("cancelled before it started")
                work = self.handlers().get(self.job["kind"])
                if work is None:
                    raise ValueError(f"unknown job kind {self.job['kind']!r}")
                state, result = work()
            except BaseException as exc:  # noqa: BLE001 - every outcome, Ctrl-C included, is recorded below
                outcome = exc
            self.phase = "finish"
        except _Cancelled as exc:  # the handler's one raise landed just after the work ended
            outcome = outcome or exc
        self.phase = "finish"
        error = None
        if isinstance(outcome, _Cancelled):
            state, error = "cancelled", "cancelled before it started"
        elif outcome is not None:
            traceback.print_exception(outcome)
            state, error = "failed", _describe(outcome)
        run_id = self.job["payload"].get("run_id")
        if self.job["kind"] == "train" and run_id is not None and not self._run_recorded:
            self._finish_run(int(run_id), state, error)
        self._done.set()
        if beat.ident is not None:
            beat.join(timeout=5)
        self._beat_once()  # the last progress line, so the UI does not show an older epoch
        self._record_end(state, error, result)
        print(f"job {self.job_id} {state}" + (f": {error}" if error else ""), flush=True)
        try:
            jobs.dispatch(self.ws)
        except Exception:  # noqa: BLE001 - the job is done and recorded; the next poller starts the queue
            traceback.print_exc()
        return 0 if state != "failed" else 1

    def _train(self) -> tuple[str, dict[str, Any]]:
        from flagvision.config import RunConfig
        from flagvision.training.engine import Callback, StopAfter
        from flagvision.training.run import execute_run

        payload = self.job["payload"]
        run_id = int(payload["run_id"])
        cfg = RunConfig.from_dict(payload["config"])
        epochs = cfg.hparams.epochs
        worker = self

        class Progress(Callback):
            def on_fit_start(self, state) -> None:
                worker.phase = "work"
                done = len(state.history.epochs)
                worker.report(done / epochs, f"epoch {done + 1}/{epochs}")

            def on_batch_end(self, state) -> None:
                frac = state.batch / max(state.batches_per_epoch, 1)
                worker.report((state.epoch - 1 + frac) / epochs, f"epoch {state.epoch}/{epochs}")

            def on_epoch_end(self, state, metrics, improved) -> None:
                worker.report(metrics.epoch / epochs, f"epoch {metrics.epoch}/{epochs} · val acc {metrics.val_acc:.1%}")

        resume = bool(payload.get("resume"))
        self.report(0.0, "resuming" if resume else "loading data")
        print(f"job {self.job_id}: {'resuming' if resume else 'training'} run {run_id} ({cfg.label})", flush=True)
        self._run_recorded = True  # from here on execute_run records the run's end, whatever happens
        outcome = execute_run(
            self.ws,
            self.store,
            cfg,
            run_id=run_id,
            resume=resume,
            callbacks=[Progress(), StopAfter(self.should_stop, every_s=STOP_CHECK_S)],
        )
        self.phase = "finish"
        result, history = outcome.result, outcome.result.history
        summary = {
            "run_id": run_id,
            "epochs": len(history.epochs),
            "best_epoch": history.best_epoch,
            "best_val_acc": history.best_val_acc,
            "stop_reason": history.stop_reason,
            "test_acc": result.evaluation.accuracy if result.evaluation else None,
            "checkpoint": str(result.checkpoint_dir),
        }
        return outcome.status, summary

    def _finish_run(self, run_id: int, status: str, error: str | None) -> None:
        """Record the end of a run whose training never began (a bad payload, cancelled first)."""
        from flagvision.training.run import finish_run

        self._run_recorded = True
        try:
            finish_run(self.store, run_id, None, status, error)
        except Exception:  # noqa: BLE001 - the job row still gets its state below; say why the run row did not
            traceback.print_exc()

    def _study(self) -> tuple[str, dict[str, Any] | None]:
        try:
            from flagvision.studies.runner import run_study_job
        except ImportError as exc:
            raise RuntimeError(
                f"study jobs need flagvision.studies.runner.run_study_job, which this installation lacks ({exc})"
            ) from None
        self.phase = "work"
        result = run_study_job(self.ws, self.store, self.job, self.should_stop, self.report)
        return ("cancelled" if self.stop.is_set() else "succeeded"), result

    def _weights(self) -> tuple[str, dict[str, Any]]:
        from flagvision.models.weights import MB, DownloadCancelled, download_weights

        # The phase stays "prepare": SIGTERM aborts the download at once (a read may wait up to
        # its timeout), and download_weights removes its partial file on the way out.
        url = self.job["payload"].get("url")

        def progress(done: int, total: int | None) -> None:
            of = f" of {total / MB:.0f} MB" if total else " MB"
            self.report(done / total if total else 0.0, f"downloading {done / MB:.0f}{of}")
            if total and done >= total:
                self.report(1.0, "checking the file")

        self.report(0.0, "connecting")
        try:
            path = download_weights(progress, url=url, should_stop=self.should_stop)
        except DownloadCancelled:
            return "cancelled", {}
        return "succeeded", {"path": str(path)}

    def _finder(self) -> tuple[str, dict[str, Any]]:
        from flagvision.models.finder import FinderConfig, build_finder, finder_dir

        # The phase stays "prepare": build_finder has no stop check, so SIGTERM aborts it at once
        # (nothing is kept; the weights and card are written only at the end).
        # Rendering the scenes is the first ~third of the time, the epochs the rest.
        def progress(stage: str, done: int, total: int) -> None:
            if stage == "rendering scenes":
                self.report(0.3 * done / max(total, 1), f"rendering scenes {done}/{total}")
            else:
                self.report(0.3 + 0.7 * done / max(total, 1), f"training: epoch {done} of {total}")

        self.report(0.0, "rendering scenes")
        cfg = FinderConfig.from_dict(self.job["payload"].get("config") or {})
        finder = build_finder(self.ws, cfg, progress=progress)
        return "succeeded", {"path": str(finder_dir(self.ws)), "metrics": finder.card.get("metrics", {})}

    def _builtin(self) -> tuple[str, dict[str, Any]]:
        from flagvision.jobs.defaults import queue_default_models
        from flagvision.synthetic.builtin import ensure_builtin
        from flagvision.synthetic.scenes import SynthConfig

        # The phase stays "prepare" while rendering: synthesize has no stop check, so SIGTERM aborts
        # it at once, and its staged folder leaves no half dataset behind.
        def progress(done: int, total: int) -> None:
            if done < total:
                self.report(0.95 * done / max(total, 1), f"rendering scenes {done}/{total}")
            else:  # ensure_builtin renders the example photos next (a few seconds)
                self.report(0.95, "rendering the example photos")

        self.report(0.0, "rendering scenes")
        cfg = SynthConfig.from_dict(self.job["payload"].get("synth") or {})
        path = ensure_builtin(self.ws, progress=progress, config=cfg)
        self.phase = "finish"  # the data is in place: a signal now only stops what would follow
        result: dict[str, Any] = {"path": str(path)}
        if self.stop.is_set():
            return "cancelled", result
        # Read again: "Train the default models" may have asked for them while this job ran.
        payload = (self.store.get_job(self.job_id) or self.job)["payload"]
        if payload.get("then") == jobs.THEN_DEFAULT_MODELS:
            self.report(1.0, "queueing the default models")
            result["queued"] = queue_default_models(self.ws, finder_config=payload.get("finder_config"))
            self.report(1.0, "done; the default models are queued")
        else:
            self.report(1.0, "done")
        return "succeeded", result

    def _compare(self) -> tuple[str, dict[str, Any]]:
        import torch

        from flagvision.inference.compare import compare_on_checkset, comparison_path
        from flagvision.inference.predict import Predictor
        from flagvision.models.finder import Finder
        from flagvision.synthetic.checkset import checkset_ready, ensure_checkset

        # The phase stays "prepare": nothing is kept until the report is written whole at the end.
        # One thread: the models read one image at a time, where a second thread only adds overhead.
        torch.set_num_threads(1)
        payload = self.job["payload"]
        if not checkset_ready(self.ws):
            self.report(0.0, "drawing the check set")
            ensure_checkset(
                self.ws, progress=lambda d, t: self.report(0.2 * d / max(t, 1), f"drawing the check set {d}/{t}")
            )
        a, b = Predictor.from_checkpoint(payload["a"]), Predictor.from_checkpoint(payload["b"])
        finder = Finder.from_workspace(self.ws) if payload.get("finder") else None
        report = compare_on_checkset(
            self.ws, a, b, finder,
            progress=lambda d, t: self.report(0.2 + 0.8 * d / max(t, 1), f"reading the check images {d}/{t}"),
        )  # fmt: skip
        path = comparison_path(self.ws, payload["a"], payload["b"], finder is not None)
        return "succeeded", {"path": str(path), "differ": len(report["rows"])}

    def _record_end(self, state: str, error: str | None, result: dict[str, Any] | None) -> None:
        # Retried: if this write were lost, the reaper would call a clean exit "worker died".
        for attempt in range(5):
            try:
                self.store.finish_job(self.job_id, state, error=error, result=result)
                return
            except (StoreError, sqlite3.Error, OSError):  # what a retry can fix; anything else is a bug to see
                traceback.print_exc()
                time.sleep(0.5 * (attempt + 1))


def _describe(exc: BaseException) -> str:
    """One line for the job row: a user error's own message, else the exception type too
    (the definition of a user error is :func:`flagvision.errors.is_user_error`, as in the CLI and app)."""
    return describe(exc)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2) or not args[0].isdigit():
        print("usage: python -m flagvision.jobs.worker <job-id> [<workspace>]", file=sys.stderr)
        return 2
    job_id = int(args[0])
    # The workspace is on the command line (jobs.worker_command), so that a reaper can tell this
    # worker from one of a job with the same number in another workspace; else $FLAGVISION_HOME.
    ws = Workspace.open(args[1] if len(args) == 2 else None)
    store = jobs.open_store(ws)
    job = store.get_job(job_id)
    if job is None:
        print(f"error: no job {job_id} in {ws.db_path}", file=sys.stderr)
        return 2
    if job["state"] != "running":
        # Workers are started by jobs.dispatch, which claims the job first; starting one by hand on
        # a queued job would bypass the limit on parallel jobs.
        print(f"error: job {job_id} is {job['state']}, not running; jobs.dispatch starts workers", file=sys.stderr)
        return 2
    if job["pid"] != os.getpid():  # started by hand, or before dispatch recorded the pid
        store.update_job(job_id, pid=os.getpid())
    return _Worker(ws, store, job).run()


if __name__ == "__main__":
    sys.exit(main())
