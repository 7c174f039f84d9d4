"""The service's routes, one module per resource: v1 predict and models, v2 (OIP and Triton's extensions), health,
metrics."""

from pointserve.service.routes import health, metrics, models, oip, predict, triton

# The inference routes first: the router tries routes in order, and these are the busy ones. Triton's extensions
# come before the rest of v2: GET /v2/models/stats would otherwise read as the metadata of a model "stats".
ROUTERS = (predict.router, triton.router, oip.router, models.router, health.router, metrics.router)

__all__ = ["ROUTERS"]
