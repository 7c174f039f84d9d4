"""Ray Serve replicas of the pointserve app: the same FastAPI app and the same batcher on every replica.

    pointserve deploy ray --replicas 2 --repository repo          # a local cluster, until Ctrl-C
    pointserve deploy ray --autoscale 1:4 --print > serve.yaml    # for `serve deploy serve.yaml` / KubeRay

Serve does the routing, the replica count (fixed or autoscaled), health checks and replacing dead replicas; each
replica runs :func:`pointserve.service.app.create_app` as it is, with its own dynamic batcher and admission control,
so there is no second batching layer (no ``@serve.batch``). What this module sets, and why:

* ``max_ongoing_requests`` (Serve's cap on the requests one replica holds at once, default 5) is sized to the
  batcher: the clouds its queues may hold plus one full batch per model (:func:`max_ongoing_requests_for`). Left at
  5, Serve would silently cap every batch at 5 and turn the app's own 503 (queue full) into Serve-side queueing.
* ONNX Runtime's intra-op threads per runner = the replica's CPUs (Ray's ``num_cpus``) divided by its runner
  instances, unless the settings name ``threads_per_instance``: more threads than the replica's cores only
  contend with the other replicas on the same machine.
* Health: Serve calls ``check_health`` every ``health_check_period_s``; it fails while the app is not ready
  (models not loaded and started, or draining), and a replica that fails it is replaced.
* Graceful shutdown: Serve stops routing to a replica, waits for its requests (``graceful_shutdown_timeout_s``,
  default: the settings' ``drain_timeout_s``), then runs the app's lifespan shutdown (the batcher drains).
* Every answer carries ``x-pointserve-replica: <pid>@<host>`` so a client (and the tests) can see which replica
  answered.

Ray is imported only when an application is built or run: the config writer, ``import pointserve`` and
``pointserve serve`` never import it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import yaml

from pointserve.errors import ConfigError
from pointserve.service.settings import Settings, load_settings

APP_NAME = "pointserve"
DEPLOYMENT_NAME = "PointServe"
IMPORT_PATH = "pointserve.deploy.ray_serve:build_app"
REPLICA_HEADER = b"x-pointserve-replica"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
HEALTH_CHECK_PERIOD_S = 10.0
HEALTH_CHECK_TIMEOUT_S = 30.0
INSTALL_HINT = "Ray Serve is not installed: pip install 'pointserve[ray]'"
# Settings that make no sense inside a replica (Serve's proxy owns the socket) or must not be written into a
# config file (the API key: give it to the replicas as POINTSERVE_API_KEY in their environment).
_NOT_WRITTEN = {"host", "port", "api_key", "repository"}


# -- sizing ----------------------------------------------------------------------------------------------------
def _model_names(settings: Settings) -> list[str]:
    """The models a replica will serve, as far as this machine can tell (the repository may live elsewhere)."""
    from pointserve.repository.store import Repository

    names: list[str] = []
    if settings.repository.is_dir():
        try:
            names = Repository(settings.repository).models()
        except Exception:  # an unreadable folder: size from the settings alone
            names = []
    names = names or sorted(settings.models)
    return [n for n in names if settings.model_settings(n).enabled] or [""]


def max_ongoing_requests_for(settings: Settings) -> int:
    """Requests one replica should hold at once: per model, its queue bound plus one full batch, summed.

    The queue bound is the batcher's ``max_queue_size`` in clouds when set; otherwise the bound the app derives at
    start-up is not known yet, and its floor stands in: 4 x the admitted limit (``max_admitted``, else one
    batch per runner instance), at least ``max_instances_per_request`` (as ``ServedModel.start`` does). Clouds
    bound requests from above (a request has at least one), and the result is at least 2 x the largest batch.
    """
    total = 0
    largest_batch = 1
    for name in _model_names(settings):
        b = settings.batching_for(name) if name else settings.batching
        if b.max_queue_size is not None:
            queue = b.max_queue_size
        else:
            admitted = b.max_admitted or b.instance_count * b.max_batch_size
            queue = max(4 * admitted, settings.max_instances_per_request)
        total += queue + b.max_batch_size
        largest_batch = max(largest_batch, b.max_batch_size)
    return max(total, 2 * largest_batch)


def _largest_batch(settings: Settings) -> int:
    return max((settings.batching_for(n) if n else settings.batching).max_batch_size for n in _model_names(settings))


def parse_autoscale(text: str) -> tuple[int, int]:
    """``MIN:MAX`` -> (min, max); 0 <= MIN <= MAX, MAX >= 1."""
    try:
        low, high = (int(part) for part in text.split(":"))
    except ValueError:
        raise ConfigError(f"--autoscale {text!r}: expected MIN:MAX, e.g. 1:4") from None
    if low < 0 or high < 1 or low > high:
        raise ConfigError(f"--autoscale {text!r}: need 0 <= MIN <= MAX and MAX >= 1")
    return low, high


def deployment_options(
    settings: Settings,
    *,
    replicas: int | None = None,
    autoscale: tuple[int, int] | None = None,
    target_ongoing: float | None = None,
    num_cpus: float = 1.0,
    max_ongoing_requests: int | None = None,
    health_check_period_s: float = HEALTH_CHECK_PERIOD_S,
    health_check_timeout_s: float = HEALTH_CHECK_TIMEOUT_S,
    graceful_shutdown_timeout_s: float | None = None,
) -> dict[str, Any]:
    """The Serve deployment options (the ``deployments:`` entry of a Serve config, less its name)."""
    if replicas is not None and autoscale is not None:
        raise ConfigError("give either a replica count or an autoscaling range, not both")
    if num_cpus <= 0:
        raise ConfigError(f"num_cpus must be > 0, not {num_cpus}")
    ongoing = max_ongoing_requests or max_ongoing_requests_for(settings)
    options: dict[str, Any] = {
        "max_ongoing_requests": ongoing,
        # Past this many requests waiting in the proxy for a replica with room, Serve answers 503 itself (as the
        # app does when its queue is full) instead of queueing without bound.
        "max_queued_requests": ongoing,
        "health_check_period_s": float(health_check_period_s),
        "health_check_timeout_s": float(health_check_timeout_s),
        "graceful_shutdown_timeout_s": float(
            settings.drain_timeout_s if graceful_shutdown_timeout_s is None else graceful_shutdown_timeout_s
        ),
        "ray_actor_options": {"num_cpus": num_cpus},
    }
    if autoscale is not None:
        low, high = autoscale
        # Default target: one full batch per replica in flight; below it the batcher waits for company.
        target = target_ongoing if target_ongoing is not None else float(_largest_batch(settings))
        if target <= 0:
            raise ConfigError(f"--target-ongoing must be > 0, not {target}")
        options["autoscaling_config"] = {
            "min_replicas": low,
            "initial_replicas": max(low, 1),
            "max_replicas": high,
            "target_ongoing_requests": float(target),
            "upscale_delay_s": 30.0,
            "downscale_delay_s": 600.0,
        }
    else:
        if target_ongoing is not None:
            raise ConfigError("--target-ongoing applies to --autoscale only")
        options["num_replicas"] = replicas if replicas is not None else 1
        if options["num_replicas"] < 1:
            raise ConfigError(f"replicas must be >= 1, not {options['num_replicas']}")
    return options


# -- the config file -------------------------------------------------------------------------------------------
def builder_args(settings: Settings) -> dict[str, Any]:
    """``applications[].args``: the repository's absolute path and the settings that differ from the defaults."""
    written = settings.model_dump(mode="json", exclude_defaults=True, exclude=_NOT_WRITTEN)
    return {"repository": str(Path(settings.repository).resolve()), "settings": written}


def serve_config(
    settings: Settings,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    route_prefix: str = "/",
    **options: Any,
) -> dict[str, Any]:
    """A Serve config (``serve deploy`` / KubeRay's ``serveConfigV2``): one application, one deployment.

    ``options``: :func:`deployment_options`' keywords (replicas, autoscale, target_ongoing, num_cpus, ...).
    """
    return {
        "http_options": {"host": host, "port": int(port)},
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": route_prefix,
                "import_path": IMPORT_PATH,
                "args": builder_args(settings),
                "deployments": [{"name": DEPLOYMENT_NAME, **deployment_options(settings, **options)}],
            }
        ],
    }


CONFIG_HEADER = """\
# Ray Serve config for pointserve, written by `pointserve deploy ray` (see docs/scaleout.md).
#   serve deploy THIS_FILE      (a running cluster; KubeRay: paste it as the RayService's serveConfigV2)
#   serve run THIS_FILE         (a local one)
# Every replica runs the same app and batcher; ONNX Runtime threads = the replica's num_cpus. The API key is not
# written here: set POINTSERVE_API_KEY in the replicas' environment. http_options.host 0.0.0.0 exposes the
# service beyond this machine.
"""


def config_yaml(config: dict[str, Any]) -> str:
    return CONFIG_HEADER + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def write_config(config: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(config_yaml(config))
    tmp.replace(path)
    return path


def read_config(path: str | Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not a readable Serve config: {exc}") from None
    if not isinstance(data, dict) or not data.get("applications"):
        raise ConfigError(f"{path}: not a Serve config (no applications)")
    return data


# -- inside a replica ------------------------------------------------------------------------------------------
def replica_settings(args: dict[str, Any], num_cpus: float | None) -> Settings:
    """The settings a replica serves with: ``args`` (the builder's), ONNX Runtime threads from its CPUs."""
    values = dict(args.get("settings") or {})
    if "repository" not in args:
        raise ConfigError("the pointserve Serve application needs args.repository (the model repository folder)")
    batching = dict(values.get("batching") or {})
    if num_cpus and "threads_per_instance" not in batching:
        instances = int(batching.get("instance_count", 1))
        batching["threads_per_instance"] = max(1, int(num_cpus) // instances)
    values["batching"] = batching
    values["repository"] = args["repository"]
    return load_settings(None, **values)


class ReplicaHeader:
    """Pure ASGI: adds ``x-pointserve-replica: <pid>@<host>`` to every answer, and leaves ``x-request-id`` to
    Serve's proxy (it sends the replica that id and appends it to the answer itself; the app echoes the same one,
    which would repeat the header)."""

    def __init__(self, app: Any):
        self.app = app
        self.value = f"{os.getpid()}@{socket.gethostname()}".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (REPLICA_HEADER, self.value)]}
            await send(message)

        await self.app(scope, receive, send_with_header)


def _assigned_cpus() -> float | None:
    import ray

    try:
        return ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # not inside a Ray worker
        return None


def _deployment(args: dict[str, Any]):
    """The Serve deployment of one application: each replica builds the app from ``args`` (the builder's).

    Ray is imported here, not when this module is."""
    try:
        from ray import serve
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None

    def replica_app():
        """Runs in each replica, once: the app (its lifespan, which Serve runs, loads the models and starts their
        batchers), with the replica's CPUs as ONNX Runtime's threads."""
        from pointserve.service.app import create_app

        app = create_app(replica_settings(args, _assigned_cpus()))
        app.add_middleware(ReplicaHeader)
        return app

    @serve.deployment(name=DEPLOYMENT_NAME)
    @serve.ingress(replica_app)
    class PointServeReplica:
        """One replica of the app; Serve's health check asks the app's readiness."""

        def check_health(self) -> None:
            state = self.app.state.service
            if not state.ready:
                raise RuntimeError("pointserve replica not ready: " + ("draining" if state.draining else "loading"))

    return PointServeReplica


def build_app(args: dict[str, Any]):
    """The Serve application builder (``import_path: pointserve.deploy.ray_serve:build_app``).

    ``args``: ``repository`` (the folder, as the replicas see it) and ``settings`` (``pointserve serve`` settings,
    as in its config file). The deployment options here are the defaults :func:`deployment_options` computes
    from the settings (one replica); a config file's ``deployments:`` entry overrides them.
    """
    settings = replica_settings(args, None)
    return _deployment(args).options(**deployment_options(settings)).bind()


def application(config: dict[str, Any]):
    """The Serve application of a config written by :func:`serve_config`, its deployment options applied."""
    (app,) = config["applications"]
    (options,) = app.get("deployments") or [{}]
    options = {k: v for k, v in options.items() if k != "name"}
    return _deployment(app["args"]).options(**options).bind()


def run_local(config: dict[str, Any], *, num_cpus: int | None = None) -> None:
    """Start a local Ray cluster (``num_cpus``: None = every core), deploy ``config`` and serve until Ctrl-C (or
    SIGTERM); then shut Serve and the cluster down (the replicas drain first). Only the cluster started here is
    touched."""
    try:
        import ray
        from ray import serve
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    import time

    (app,) = config["applications"]
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)
    try:
        serve.start(http_options=config.get("http_options") or {"host": DEFAULT_HOST})
        serve.run(application(config), name=app["name"], route_prefix=app.get("route_prefix", "/"), blocking=False)
        http = config.get("http_options") or {}
        print(
            f"pointserve on Ray Serve: http://{http.get('host', DEFAULT_HOST)}:{http.get('port', DEFAULT_PORT)}"
            f"{app.get('route_prefix', '/').rstrip('/')}/ (Ctrl-C stops the replicas and the cluster)",
            flush=True,
        )
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            print("stopping: the replicas drain, then the cluster stops", flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
