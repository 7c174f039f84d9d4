"""Live model control: Triton's model repository extension (load / unload) and its explicit and poll modes.

A model's version is switched while requests flow, so a switch must fail none of them. The new version is opened
and started (runners loaded, batch profile measured) *beside* the old one and only then put in ``state.models``,
in one assignment on the event loop. A request that already holds the old ServedModel was admitted on the old
one's admission gate by the middleware (which looks the model up before the route does); the old version is
stopped only once that gate is empty, and its batcher then finishes what is queued. A load that fails before the
swap (a file whose sha256 does not match the manifest, a graph the runtime refuses, a missing version) closes
what it opened and leaves the old version serving; the error says why, and the repository index keeps it.
Loads and unloads of one model are serialised by a lock per model; a switch runs as its own task, so a client
that goes away mid-load cannot leave half-opened runners behind.

Modes (``Settings.model_control``):

* ``none`` (default): models load at start-up; load / unload answer 400 saying so (Triton answers 503, but this
  is a request the server never takes in this mode, not a passing unavailability: a 503 would invite retries, and
  a client's mistake is never a 5xx here).
* ``explicit``: load / unload work. Unlike Triton (which starts with no model unless ``--load-model``), the
  enabled models still load at start, or only ``startup_models`` (``--load-model``).
* ``poll``: the repository folder is read every ``repository_poll_interval_s``; a served model follows it (a
  newer version, or changed variants of its version, is loaded by the same switch; a model whose folder is gone
  is unloaded; a newly published model is loaded). Load / unload answer 400, as in ``none`` (Triton refuses them
  while polling too): the folder is the source of truth. A version that failed is retried only once its manifest
  changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson

from pointserve.errors import (
    InputError,
    ModelControlDisabledError,
    ModelControlError,
    ModelNotFoundError,
    RepositoryError,
    ServiceUnavailableError,
)
from pointserve.repository.manifest import MANIFEST_FILE, Manifest
from pointserve.repository.store import Repository, check_name, load_manifest
from pointserve.service.served_model import ServedModel, open_served_model
from pointserve.service.state import ServiceState

log = logging.getLogger("pointserve.service")
# pointserve's model states in Triton's words (ModelReadyState).
TRITON_STATE = {
    "loading": "LOADING",
    "ready": "READY",
    "draining": "UNLOADING",
    "stopped": "UNAVAILABLE",
    "failed": "UNAVAILABLE",
}
_DRAIN_TICK_S = 0.01


class _NoSuchModel(ModelNotFoundError):
    """A load of a name the repository does not have: answered, but not kept in the index."""


@dataclass
class Note:
    """What the repository index says of a model beyond its served version: the last load or unload."""

    version: int | None
    state: str  # Triton's: LOADING, UNLOADING, UNAVAILABLE
    reason: str

    def entry(self, name: str) -> dict[str, Any]:
        version = {} if self.version is None else {"version": str(self.version)}
        return {"name": name, **version, "state": self.state, "reason": self.reason}


def manifest_fingerprint(manifest: Manifest) -> str:
    """Poll mode compares versions by their manifest, which records each variant file's sha256: a rebuilt or added
    variant changes it, a re-read of the same folder does not."""
    return hashlib.sha256(manifest.model_dump_json().encode()).hexdigest()


def _request_parameters(body: bytes, what: str) -> dict[str, Any]:
    """Triton's load / unload body: nothing, ``{}`` or ``{"parameters": {...}}``."""
    if not body.strip():
        return {}
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"malformed JSON in the {what} request: {exc}") from None
    if not isinstance(request, dict) or set(request) - {"parameters"}:
        raise InputError(f'the {what} request is {{"parameters": {{...}}}} or empty')
    parameters = request.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InputError(f"{what} request: parameters must be an object, got {type(parameters).__name__}")
    return parameters


def load_request_version(body: bytes) -> int | None:
    """The version a load request asks for: ``{"parameters": {"version": 3}}`` (or ``"3"``); None: the settings'
    pinned version, else the latest. Triton's ``config`` and ``file:`` overrides are refused by name: a version's
    manifest is what describes it here."""
    parameters = _request_parameters(body, "load")
    overrides = sorted(k for k in parameters if k == "config" or k.startswith("file:"))
    if overrides:
        raise InputError(
            f"load parameter(s) {', '.join(overrides)} (Triton's config / file override) are not supported: "
            'publish a version into the repository and load it with {"parameters": {"version": N}}'
        )
    unknown = sorted(set(parameters) - {"version"})
    if unknown:
        raise InputError(f"unknown load parameter(s): {', '.join(unknown)} (the one parameter is version)")
    version = parameters.get("version")
    if version is None:
        return None
    if isinstance(version, str) and version.strip().isdigit():
        version = int(version)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InputError(f"load parameter version must be a version number (1, 2, ...), got {version!r}")
    return version


def check_unload_request(body: bytes) -> None:
    """``tritonclient`` sends ``{"parameters": {"unload_dependents": false}}``; pointserve has no ensembles, so
    there are never dependents to unload."""
    parameters = _request_parameters(body, "unload")
    unknown = sorted(set(parameters) - {"unload_dependents"})
    if unknown:
        raise InputError(f"unknown unload parameter(s): {', '.join(unknown)} (the one parameter is unload_dependents)")
    if not isinstance(parameters.get("unload_dependents", False), bool):
        raise InputError("unload parameter unload_dependents must be true or false")


def _check_name(name: str) -> None:
    """A model name is a folder name of the repository: ``..`` or a hidden folder is no model."""
    try:
        check_name(name)
    except RepositoryError as exc:
        raise ModelControlError(str(exc)) from None


class ModelController:
    """Loads, switches and unloads the models of one app; owns the per-model locks and the poll loop."""

    def __init__(self, state: ServiceState):
        self.state = state
        self.settings = state.settings
        self.repository = Repository(state.settings.repository)
        self.notes: dict[str, Note] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._failed: dict[str, tuple[int, str]] = {}  # poll mode: (version, fingerprint) that failed to load
        self._switches: set[asyncio.Task] = set()
        self._poller: asyncio.Task | None = None

    @property
    def mode(self) -> str:
        return self.settings.model_control

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Called once the start-up models serve: begin polling in poll mode."""
        if self.mode == "poll" and self._poller is None:
            self._poller = asyncio.create_task(self._poll_forever(), name="repository-poll")

    async def close(self) -> None:
        """Shutdown: stop polling, let a switch under way finish (bounded by ``drain_timeout_s``)."""
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        if self._switches:
            await asyncio.wait(set(self._switches), timeout=self.settings.drain_timeout_s)

    # -- the API ------------------------------------------------------------------------------------------------
    def check_enabled(self, action: str) -> None:
        """Refuse load / unload unless in explicit mode, saying how to turn it on."""
        if self.mode == "explicit":
            return
        if self.mode == "poll":
            how = "the server follows the repository folder (model_control poll): publish or remove a version there"
        else:
            how = "models load at start-up (model_control none): restart with --model-control explicit to use it"
        raise ModelControlDisabledError(f"explicit model {action} is off; {how}")

    async def load(self, name: str, version: int | None = None) -> ServedModel:
        """``POST /v2/repository/models/{name}/load``: (re)load ``name`` at ``version`` (None: pinned or latest)."""
        self.check_enabled("load")
        _check_name(name)
        return await self._run(self._switch(name, version))

    async def unload(self, name: str) -> None:
        """``POST /v2/repository/models/{name}/unload``: drain the model, then stop serving it (404 after)."""
        self.check_enabled("unload")
        _check_name(name)
        await self._run(self._unload(name))

    async def _run(self, work) -> Any:
        """Run ``work`` as its own task: a cancelled request (client gone) does not abort a switch half way."""
        task = asyncio.ensure_future(work)
        self._switches.add(task)
        task.add_done_callback(self._switches.discard)
        return await asyncio.shield(task)

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _refuse_while_draining(self) -> None:
        if self.state.draining:
            raise ServiceUnavailableError("the server is shutting down; models are not loaded or unloaded now")

    # -- switching ----------------------------------------------------------------------------------------------
    def _target_version(self, name: str, version: int | None) -> int:
        """The version a load means (blocking: lists the folder): the one asked, else pinned, else the latest."""
        versions = self.repository.versions(name)
        if not versions:
            known = ", ".join(self.repository.models()) or "none"
            raise _NoSuchModel(f"no model {name!r} in repository {self.repository.root} (models: {known})")
        wanted = version or self.settings.model_settings(name).version
        if wanted is None:
            return versions[-1]
        if wanted not in versions:
            raise ModelNotFoundError(f"model {name!r} has no version {wanted} (versions: {versions})")
        return wanted

    async def _switch(self, name: str, version: int | None) -> ServedModel:
        metrics = self.state.metrics
        async with self._lock(name):
            self._refuse_while_draining()
            old = self.state.models.get(name)
            keeps = f"; version {old.version} keeps serving" if old is not None else ""
            try:
                target = await asyncio.to_thread(self._target_version, name, version)
            except Exception as exc:  # noqa: BLE001 - every failure is answered, with its reason
                if not isinstance(exc, _NoSuchModel):
                    self.notes[name] = Note(version, "UNAVAILABLE", f"failed to load: {exc}")
                raise ModelControlError(f"failed to load model {name!r}: {exc}{keeps}") from exc
            self.notes[name] = Note(target, "LOADING", "loading")
            if old is None:  # a reload leaves the model's state alone: its old version serves meanwhile
                metrics.set_state(name, "loading")
            started = time.perf_counter()
            new: ServedModel | None = None
            try:
                new = await asyncio.to_thread(open_served_model, self.repository, name, self.settings, target)
                await new.start(metrics)  # a batch profile is measured; metrics point at it only once it is ready
                self._refuse_while_draining()
            except Exception as exc:  # noqa: BLE001
                if new is not None:
                    await new.stop(None, timeout_s=0)
                self.notes[name] = Note(target, "UNAVAILABLE", f"failed to load: {exc}")
                if old is None:
                    metrics.set_state(name, "failed")
                log.warning("model load failed", extra={"model": name, "version": target, "error": str(exc)})
                raise ModelControlError(f"failed to load model {name!r} version {target}: {exc}{keeps}") from exc
            self.state.models[name] = new  # from here every lookup finds the new version
            self._failed.pop(name, None)
            if old is not None and old.version != new.version:
                self.notes[name] = Note(old.version, "UNLOADING", f"replaced by version {new.version}")
            else:
                self.notes.pop(name, None)
            if old is not None:
                await self._retire(old)
            self.notes.pop(name, None)
            log.info(
                "model switched" if old is not None else "model loaded",
                extra={
                    "model": name,
                    "version": new.version,
                    "previous_version": old.version if old is not None else None,
                    "switch_s": round(time.perf_counter() - started, 3),
                },
            )
            return new

    async def _retire(self, served: ServedModel) -> None:
        """Stop a version no lookup finds any more, once the requests admitted on it are answered (or
        ``drain_timeout_s`` passed); its batcher finishes what is queued."""
        served.state = "draining"
        deadline = time.monotonic() + self.settings.drain_timeout_s
        admission = served.admission
        while admission is not None and (admission.admitted or admission.waiting) and time.monotonic() < deadline:
            await asyncio.sleep(_DRAIN_TICK_S)
        await served.stop(None, timeout_s=max(0.0, deadline - time.monotonic()))

    async def _unload(self, name: str) -> None:
        async with self._lock(name):
            self._refuse_while_draining()
            served = self.state.models.get(name)
            if served is None:
                known = name in self.notes or name in await asyncio.to_thread(self.repository.models)
                if known:
                    return  # already unloaded: nothing to do, and no reason to fail a script that makes sure
                served_names = ", ".join(sorted(self.state.models)) or "none"
                raise ModelControlError(f"no model {name[:128]!r} to unload (served: {served_names})")
            del self.state.models[name]  # new requests get the usual 404
            self.notes[name] = Note(served.version, "UNLOADING", "unloading")
            self.state.metrics.set_state(name, "draining")
            await self._retire(served)
            self.state.metrics.set_state(name, "stopped")
            self.notes[name] = Note(served.version, "UNAVAILABLE", "unloaded")
            log.info("model unloaded", extra={"model": name, "version": served.version})

    # -- poll mode ----------------------------------------------------------------------------------------------
    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.repository_poll_interval_s)
            try:
                await self.poll_once()
            except Exception:  # noqa: BLE001 - one bad look at the folder must not end the polling
                log.exception("repository poll failed")

    async def poll_once(self) -> None:
        """Bring the served models in line with the repository folder (one look)."""
        models = self.state.models.items()
        served = {name: (m.version, manifest_fingerprint(m.model_version.manifest)) for name, m in models}
        plan = await asyncio.to_thread(self._poll_plan, served)
        for action, name, version, fingerprint in plan:
            if self.state.draining:
                return
            try:
                if action == "unload":
                    await self._run(self._unload(name))
                else:
                    await self._run(self._switch(name, version))
            except ModelControlError as exc:  # logged and noted in the index; retried once the manifest changes
                self._failed[name] = (version, fingerprint)
                log.warning("poll: %s", exc)

    def _poll_plan(self, served: dict[str, tuple[int, str]]) -> list[tuple[str, str, int | None, str]]:
        """What to load and unload (blocking: reads the folder). A missing repository folder (an unmounted volume)
        changes nothing: it is no reason to unload every model."""
        if not self.repository.root.is_dir():
            log.warning("poll: no repository folder at %s; serving on unchanged", self.repository.root)
            return []
        plan: list[tuple[str, str, int | None, str]] = []
        for name in sorted(set(self.repository.models()) | set(served)):
            chosen = self.settings.model_settings(name)
            versions = self.repository.versions(name)
            target = chosen.version if chosen.version in versions else None
            if chosen.version is None and versions:
                target = versions[-1]
            if not chosen.enabled or target is None:
                if name in served:
                    plan.append(("unload", name, None, ""))
                continue
            try:
                path = self.repository.root / name / str(target) / MANIFEST_FILE
                fingerprint = manifest_fingerprint(load_manifest(path))
            except Exception as exc:  # noqa: BLE001 - a manifest mid-edit: the next poll reads it again
                log.warning("poll: cannot read %s version %s: %s", name, target, exc)
                continue
            if served.get(name) == (target, fingerprint) or self._failed.get(name) == (target, fingerprint):
                continue
            plan.append(("load", name, target, fingerprint))
        return plan

    # -- the index ----------------------------------------------------------------------------------------------
    async def index(self, ready_only: bool = False) -> list[dict[str, Any]]:
        """Triton's repository index: one entry per served version, per version loading, failed, unloading or
        unloaded (with the reason), and per model of the folder that is not loaded."""
        entries = []
        for name, served in self.state.models.items():
            state = TRITON_STATE.get(served.state, "UNAVAILABLE")
            reason = "" if state == "READY" else f"model is {served.state}"
            entries.append({"name": name, "version": str(served.version), "state": state, "reason": reason})
        for name, note in self.notes.items():
            served = self.state.models.get(name)
            if served is None or note.version != served.version:
                entries.append(note.entry(name))
        listed = {entry["name"] for entry in entries}
        reason = "not served (not loaded at start-up)" if self.mode == "none" else "not loaded"
        for name in await asyncio.to_thread(self.repository.models):
            if name not in listed:
                entries.append({"name": name, "state": "UNAVAILABLE", "reason": reason})
        if ready_only:
            entries = [e for e in entries if e["state"] == "READY"]
        return sorted(entries, key=lambda e: (e["name"], int(e.get("version") or 0)))
