"""The one exception hierarchy of pointserve.

Every error the package raises on purpose derives from :class:`PointServeError`, so the CLI can print a
single clear line instead of a traceback and the service can map each kind to one HTTP status in one place.
"""


class PointServeError(Exception):
    """Base class of every error pointserve raises on purpose."""


class ConfigError(PointServeError):
    """A setting, flag or configuration file is invalid."""


class DataError(PointServeError):
    """A dataset or point-cloud file is missing or malformed (the message names the file)."""


class CheckpointError(PointServeError):
    """A checkpoint is missing, malformed, or not in the safetensors + card.json format."""


class ExportError(PointServeError):
    """Export to ONNX or a precision conversion failed."""


class TensorRTCompatibilityError(ExportError):
    """An exported graph holds a node TensorRT cannot take (the message names each node, its op and why)."""


class CalibrationError(PointServeError):
    """Building a calibration set or quantizing a graph failed."""


class EngineError(PointServeError):
    """An engine could not be built, loaded or run."""


class EngineCompatibilityError(EngineError):
    """An engine was built for another GPU or runtime version than the one present."""


class BackendUnavailableError(EngineError):
    """The runtime a backend needs (tensorrt, onnxruntime-gpu, torch, CUDA) is not installed or usable."""


class RepositoryError(PointServeError):
    """The model repository is malformed."""


class IntegrityError(RepositoryError):
    """A repository file does not match the hash its manifest records (tampered or half written)."""


class ModelNotFoundError(RepositoryError):
    """No such model, or no such version of it."""


class InputError(PointServeError):
    """A request's input is invalid (shape, values, size, category, ...)."""


class PayloadTooLargeError(InputError):
    """A request body (or a cloud in it) is larger than the configured limit."""


class UnsupportedMediaTypeError(InputError):
    """A request's content type (or an uploaded file's format) is not one the endpoint reads."""


class ServiceUnavailableError(PointServeError):
    """The service cannot take the request now (queue full, shutting down, model not ready)."""


class RequestTimeoutError(PointServeError):
    """A request waited past its deadline."""


class ModelControlError(PointServeError):
    """A model could not be loaded or unloaded through model control (the message says why); whatever served the
    model before still serves it."""


class ModelControlDisabledError(ModelControlError):
    """Load / unload were asked of a server whose model control mode does not take them (``none``, ``poll``): a
    request this server never takes, so a 400 (Triton answers 503, UNAVAILABLE; nothing changes until a restart)."""
