"""The diffusers engine: pipelines on one device, the pipeline cache, dynamic batching,
preview decoding, image encoding and the random-weight demo models.

It never touches the ORM and reads no settings: the worker builds one `Engine` per
process with the device and memory budget it was given (generations/worker/runtime.py)
and hands it `RunRequest`s. The web process never imports it.
"""

from generations.engine.types import Canceled, ModelLoadError, OutOfMemory, RunRequest, RunResult

__all__ = ["Canceled", "ModelLoadError", "OutOfMemory", "RunRequest", "RunResult"]
