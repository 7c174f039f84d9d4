"""pointserve: put point-cloud networks into production.

Importing the package is cheap: it never imports torch, onnxruntime or TensorRT. Each stage of the
pipeline (see ``docs/architecture.md``) lives in its own subpackage and imports heavy runtimes lazily.
"""

from pointserve.errors import PointServeError

__version__ = "0.1.0"
__all__ = ["PointServeError", "__version__"]
