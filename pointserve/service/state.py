"""What one running app holds: its settings, metrics, loaded models, and the shutdown (drain) state."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pointserve.service.metrics import ServiceMetrics
from pointserve.service.served_model import ServedModel
from pointserve.service.settings import Settings


@dataclass
class ServiceState:
    settings: Settings
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)
    models: dict[str, ServedModel] = field(default_factory=dict)
    loaded: bool = False
    draining: bool = False
    in_flight: int = 0
    started_at: float = field(default_factory=time.monotonic)
    drain_started_at: float | None = None

    @property
    def ready(self) -> bool:
        """Ready for traffic: every model loaded and serving, and no shutdown under way."""
        return self.loaded and not self.draining and all(m.state == "ready" for m in self.models.values())

    def start_draining(self) -> None:
        """SIGTERM: readiness turns false and new requests are refused; accepted ones go on."""
        if not self.draining:
            self.draining = True
            self.drain_started_at = time.monotonic()
            self.metrics.ready.set(0)
            for name, model in self.models.items():
                model.state = "draining"
                self.metrics.set_state(name, "draining")

    def drained(self) -> bool:
        """True once draining and every accepted request has been answered (or the drain timed out)."""
        if not self.draining or self.drain_started_at is None:
            return False
        timed_out = time.monotonic() - self.drain_started_at > self.settings.drain_timeout_s
        return self.in_flight == 0 or timed_out
