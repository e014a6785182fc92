"""A small resumable stage runner.

Each stage declares the config payload it reads and the stages it reads from. Its
*fingerprint* is a hash of that payload, its code version and its upstream stages'
fingerprints, so a changed config field changes the fingerprint of exactly the stages
that read it and of everything downstream of them — and of nothing else.

``stages.json`` in the run directory records, per stage, the fingerprint it last ran
with and whether it finished (``done``) or was interrupted (``running``). On a re-run:

* ``done`` with the same fingerprint and every recorded output file unchanged -> skipped;
* ``done`` but a recorded file is missing or changed -> a resumable stage (experts,
  scoring) removes the damaged part (one expert, one shard) and resumes; any other stage
  runs again;
* ``running`` with the same fingerprint and the stage is internally resumable -> run
  again *keeping* its partial outputs, so it redoes only what is missing;
* anything else -> its outputs are removed and it runs from scratch; but a *keyed*
  stage (experts, scoring: outputs made of units addressed by content) keeps them, and
  its ``reconcile`` hook removes the units whose identity no longer matches before it
  runs (:mod:`taskpgm.pipeline.reuse`), so a changed pool redoes only what changed.

A finished stage records every file it wrote (:mod:`taskpgm.pipeline.ownership`); only
those are ever removed. A file under a stage's outputs that no record lists is the
user's: a run that would have to replace it refuses, naming it, before any stage runs.

The record is rewritten atomically after every state change, so a SIGKILL at any
moment leaves a consistent file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from taskpgm.errors import InputError
from taskpgm.io import atomic_write_json, read_json
from taskpgm.pipeline import ownership

STAGES_FILE = "stages.json"

Action = Literal["skip", "run", "resume"]


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline.

    ``payload`` is the JSON-able slice of the config this stage depends on; ``deps``
    names upstream stages; ``outputs`` are paths relative to the run directory that the
    stage owns (removed before a from-scratch re-run); those in ``optional_outputs``
    are owned but written only by some configs, so their absence alone does not re-run
    the stage (once written they are in the record, which notices them missing).
    ``version`` is bumped when the stage's code changes its output for the same config.
    """

    name: str
    run: Callable[[], None]
    payload: Any = None
    deps: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    optional_outputs: tuple[str, ...] = ()
    resumable: bool = False
    version: int = 1
    # How deep below an output a damaged file's unit of repair sits (ownership.unit_of).
    repair_depth: int = 1
    # Keyed stages: called before every run with a predicate "this path (relative to the
    # run directory) is the run's own file"; removes what is stale, only among those.
    reconcile: Callable[[Callable[[str], bool]], None] | None = None
    # For the plan: what the stage will compute, given the stages that run before it.
    describe: Callable[[set[str]], str] | None = None


class StageState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fingerprint: str
    status: Literal["running", "done"]
    seconds: float | None = None
    # Every file the finished stage wrote: relative path -> [size, mtime_ns, sha256].
    # For a stage that stopped on an error: what it had written so far. None: not known
    # (a killed stage, or a record from before files were recorded).
    files: dict[str, list] | None = None
    # When a running stage (or the first of its resumed attempts) started, ns since the
    # epoch: a file under its outputs is its own if listed in ``files`` or not older
    # than this. None with ``files`` set: the list is complete (the stage stopped on an
    # error and recorded it).
    started_ns: int | None = None


class StagesRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["taskpgm-stages"] = "taskpgm-stages"
    version: int = 1
    stages: dict[str, StageState] = {}


def _file_entry_ok(entry: list) -> bool:
    return (len(entry) == 3 and all(isinstance(v, int) and not isinstance(v, bool)
                                    for v in entry[:2]) and isinstance(entry[2], str))


def _digest(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def fingerprints(stages: Iterable[Stage]) -> dict[str, str]:
    """Fingerprint of every stage, in dependency order (stages must be topologically sorted)."""
    out: dict[str, str] = {}
    for st in stages:
        missing = [d for d in st.deps if d not in out]
        if missing:
            raise ValueError(f"stage {st.name!r} depends on {missing} which come later or are unknown")
        out[st.name] = _digest(
            {
                "stage": st.name,
                "version": st.version,
                "payload": st.payload,
                "deps": {d: out[d] for d in st.deps},
            }
        )
    return out


@dataclass
class PlanItem:
    stage: Stage
    fingerprint: str
    action: Action
    reason: str
    # Damaged parts of a finished resumable stage, removed before it resumes.
    repair: tuple[str, ...] = ()
    # Files under the outputs the record does not list: the user's, never recorded.
    foreign: frozenset[str] = frozenset()
    # A keyed stage that runs again keeping its outputs (reconciled, not removed).
    keep: bool = False
    # ``reason`` before the stage's own note (``Stage.describe``) was added to it.
    why: str = ""


@dataclass
class RunSummary:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


class Runner:
    """Plans and runs stages in a run directory, recording progress in ``stages.json``."""

    def __init__(self, run_dir: str | Path, stages: list[Stage]):
        self.run_dir = Path(run_dir)
        self.stages = list(stages)
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError("stage names must be unique")
        self.fingerprints = fingerprints(self.stages)
        self.record = self._load_record()

    # -- record ---------------------------------------------------------------------------
    @property
    def record_path(self) -> Path:
        return self.run_dir / STAGES_FILE

    def _load_record(self) -> StagesRecord:
        if not self.record_path.is_file():
            return StagesRecord()
        try:
            record = StagesRecord.model_validate(read_json(self.record_path))
        except ValidationError as exc:
            raise InputError(
                f"{self.record_path}: not a taskpgm stage record ({exc.errors()[0]['msg']}); "
                "remove it to start the run afresh"
            ) from None
        outputs = {st.name: st.outputs for st in self.stages}
        for name, state in record.stages.items():
            for rel, entry in (state.files or {}).items():
                ok = ownership.within(rel, outputs.get(name, ())) or name not in outputs
                if not ok or not _file_entry_ok(entry):
                    raise InputError(
                        f"{self.record_path}: stage {name!r} records {rel!r}, which is not one "
                        "of its outputs or not [size, mtime, sha256]; the record was edited "
                        "by hand: remove it to start the run afresh"
                    )
        return record

    def _save_record(self) -> None:
        # Compact: the record lists every output file (96k shards on a 310-task pool) and
        # is rewritten after each stage; it is the run's bookkeeping, not a report.
        atomic_write_json(self.record_path, self.record.model_dump(mode="json"), compact=True)

    # -- planning -------------------------------------------------------------------------
    def plan(self) -> list[PlanItem]:
        items: list[PlanItem] = []
        rerun: set[str] = set()
        for st in self.stages:
            fp = self.fingerprints[st.name]
            state = self.record.stages.get(st.name)
            upstream = [d for d in st.deps if d in rerun]
            repair: tuple[str, ...] = ()
            if state is None:
                action, reason = "run", "not run yet"
            elif state.fingerprint != fp:
                action, reason = "run", "config or inputs changed"
            elif upstream:
                # Partial outputs were made from the old upstream outputs: start afresh.
                action, reason = "run", f"upstream {upstream[0]!r} re-runs"
            elif state.status == "running":
                action, reason = ("resume", "interrupted; resuming") if st.resumable else (
                    "run", "interrupted; restarting")
            elif missing := [o for o in st.outputs if o not in st.optional_outputs
                             and not (self.run_dir / o).exists()]:
                action, reason = "run", f"output {missing[0]!r} missing"
            elif bad := ownership.damaged(self.run_dir, state.files or {}):
                rel, what = bad[0]
                more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
                if st.resumable:
                    repair = tuple(sorted({ownership.unit_of(r, st.outputs, st.repair_depth)
                                           for r, _ in bad}))
                    action, reason = "resume", f"{rel!r} {what} since it was written{more}; redoing it"
                else:
                    action, reason = "run", f"{rel!r} {what} since it was written{more}"
            else:
                action, reason = "skip", "up to date"
            keep = action == "run" and st.reconcile is not None and state is not None and (
                state.files is not None or state.started_ns is not None)
            if keep and state is not None:
                # Kept units must be intact: damaged ones are removed like a repair's.
                bad = ownership.damaged(self.run_dir, state.files or {})
                repair = tuple(sorted({ownership.unit_of(r, st.outputs, st.repair_depth)
                                       for r, _ in bad}))
            why = reason
            if action != "skip" and st.describe is not None and (more := st.describe(rerun)):
                reason = f"{reason}; {more}"
            if action != "skip":
                rerun.add(st.name)
            foreign: frozenset[str] = frozenset()
            if state is not None and action != "skip":
                foreign = frozenset(self._foreign(st, state))
            items.append(PlanItem(st, fp, action, reason, repair, foreign, keep, why))
        return items

    def _foreign(self, st: Stage, state: StageState) -> list[str]:
        """Files under the stage's outputs that it did not write, as far as the record
        can tell: not in its file list; for a killed stage, older than its start."""
        if state.status == "done" or state.started_ns is None:
            return [] if state.files is None else ownership.foreign(
                self.run_dir, st.outputs, state.files)
        known = state.files or {}
        return [r for r in ownership.present(self.run_dir, st.outputs) if r not in known
                and (self.run_dir / r).lstat().st_mtime_ns < state.started_ns]

    def conflicts(self, items: list[PlanItem]) -> list[str]:
        """Files the plan would have to delete that this run never wrote."""
        out: list[str] = []
        for item in items:
            state = self.record.stages.get(item.stage.name)
            if item.action == "run" and (state is None or (
                    state.status == "done" and state.files is None)):
                # Never run here, or a record that does not say what it wrote (an older
                # taskpgm's, or edited): nothing present can be taken as the run's.
                out += ownership.present(self.run_dir, item.stage.outputs)
            elif item.action == "run":
                out += sorted(item.foreign)
            # A repaired unit (one expert's directory, one shard) is removed whole, and
            # rewritten: nothing of the user's may be in it or be it (a symlinked parent).
            for unit in item.repair:
                out += [f for f in item.foreign
                        if f == unit or f.startswith(unit + "/") or unit.startswith(f + "/")]
        return out

    def check(self, items: list[PlanItem]) -> None:
        """Refuse, before any work, a plan that would delete files this run did not write."""
        if clash := self.conflicts(items):
            more = f" (and {len(clash) - 1} more)" if len(clash) > 1 else ""
            raise InputError(
                f"{self.run_dir / clash[0]}: in a place this run must write, but not written by "
                f"it (not in {STAGES_FILE}){more}; move it away or choose another run.dir"
            )

    # -- running --------------------------------------------------------------------------
    def run(self, on_event: Callable[[str, PlanItem, float | None], None] | None = None
            ) -> RunSummary:
        summary = RunSummary()
        items = self.plan()
        self.check(items)
        for item in items:
            st = item.stage
            if item.action == "skip":
                summary.skipped.append(st.name)
                if on_event:
                    on_event("skip", item, None)
                continue
            if item.action == "run" and not item.keep:
                self._remove_outputs(st)
            ownership.remove_temps(self.run_dir, st.outputs)
            for unit in item.repair:
                self._remove_path(self.run_dir / unit)
            # Mark as running *before* touching outputs, so a kill leaves "running".
            started, known = time.time_ns(), None
            prev = self.record.stages.get(st.name)
            if (item.action == "resume" or item.keep) and prev is not None:
                # Kept outputs stay the run's: listed, or written since the first attempt.
                known = {k: v for k, v in (prev.files or {}).items()
                         if not any(k == u or k.startswith(u + "/") for u in item.repair)}
                if prev.status == "running" and prev.started_ns is not None:
                    started = prev.started_ns
            self.record.stages[st.name] = StageState(fingerprint=item.fingerprint,
                                                     status="running", started_ns=started,
                                                     files=known)
            self._save_record()
            if st.describe is not None and (more := st.describe(set())):
                # Upstream stages have run: what was unknown at planning time is known.
                item.reason = f"{item.why}; {more}"
            if on_event:
                on_event("start", item, None)
            t0 = time.perf_counter()
            try:
                if st.reconcile is not None:
                    st.reconcile(self._owner(known, started))
                    # What is left is the run's; recorded now, so a unit moved into place
                    # (an older mtime) stays the run's if this attempt is killed.
                    self.record.stages[st.name] = StageState(
                        fingerprint=item.fingerprint, status="running", started_ns=started,
                        files=ownership.snapshot(self.run_dir, st.outputs, item.foreign,
                                                 known))
                    self._save_record()
                st.run()
            except BaseException:
                # Record what the stage wrote before it stopped, so a restart can tell
                # its partial outputs from files a user adds meanwhile.
                self.record.stages[st.name] = StageState(
                    fingerprint=item.fingerprint, status="running", started_ns=None,
                    files=ownership.snapshot(self.run_dir, st.outputs, item.foreign))
                self._save_record()
                raise
            dt = time.perf_counter() - t0
            kept = self.record.stages[st.name].files if st.reconcile is not None else None
            self.record.stages[st.name] = StageState(
                fingerprint=item.fingerprint, status="done", seconds=round(dt, 3),
                files=ownership.snapshot(self.run_dir, st.outputs, item.foreign, kept),
            )
            self._save_record()
            summary.ran.append(st.name)
            summary.seconds[st.name] = dt
            if on_event:
                on_event("done", item, dt)
        return summary

    def _owner(self, known: dict[str, list] | None, started: int) -> Callable[[str], bool]:
        """Whether a path under a stage's outputs is the run's: recorded, or written by
        the current attempt (the complement of :meth:`_foreign`)."""
        def owns(rel: str) -> bool:
            if known is not None and rel in known:
                return True
            try:
                return (self.run_dir / rel).lstat().st_mtime_ns >= started
            except OSError:
                return False
        return owns

    def _remove_outputs(self, st: Stage) -> None:
        state = self.record.stages.get(st.name)
        if state is not None and state.status == "done" and state.files is not None:
            ownership.remove_recorded(self.run_dir, st.outputs, state.files)
            return
        # An interrupted stage: everything under its outputs was written after the record
        # said "running", so it is the run's. (A done stage without a file list never gets
        # here: conflicts() refuses it while anything is present.)
        for rel in st.outputs:
            self._remove_path(self.run_dir / rel)

    @staticmethod
    def _remove_path(p: Path) -> None:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
