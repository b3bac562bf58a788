"""The diffusers engine: pipelines on one device, the pipeline cache, dynamic batching,
partial images decoded from the latents, where weights come from, and the random-weight
demo models.

It never touches the ORM and reads no settings: the worker builds one `Engine` per
process with the device and memory budget it was given (generations/worker/runtime.py)
and hands it `RunRequest`s. It imports nothing of the app but the catalog, and the web
process never imports it (the image formats both share are generations/formats.py).
"""

from generations.engine.types import (
    AdapterError,
    AdapterUse,
    Canceled,
    ModelLoadError,
    OutOfMemory,
    RunRequest,
    RunResult,
)

__all__ = [
    "AdapterError",
    "AdapterUse",
    "Canceled",
    "ModelLoadError",
    "OutOfMemory",
    "RunRequest",
    "RunResult",
]
