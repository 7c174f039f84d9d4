"""The service's routes, one module per resource: v1 predict and models, v2 (OIP), health, metrics."""

from pointserve.service.routes import health, metrics, models, oip, predict

# The inference routes first: the router tries routes in order, and these are the busy ones.
ROUTERS = (predict.router, oip.router, models.router, health.router, metrics.router)

__all__ = ["ROUTERS"]
