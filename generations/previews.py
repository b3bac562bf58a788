"""Partial images of a streaming request: previews taken while the steps run.

Method: at evenly spaced denoising steps (``callback_on_step_end``), the worker decodes
the *current* latents of the batch's first image with the model's own VAE (FLUX latents
are unpacked first). That costs one VAE decode per preview and shows the picture as
it is at that step (noisier early on), at the requested size.

Transport: the worker stores each preview through the ``images`` storage under a
predictable name and publishes a notice with the id ``<generation id>:partial:<k>`` on
the completion channel (generations/notify.py); the web process that streams the
response wakes up, reads the file and relays it as a server-sent event.
"""

from __future__ import annotations

import logging

from django.core.files.base import ContentFile

from generations import notify
from imagehub.storage import images as storage

logger = logging.getLogger("generations.previews")

EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


def partial_key(generation_id: str, k: int) -> str:
    return f"{generation_id}:partial:{k}"


def preview_name(generation_id: str, k: int, output_format: str) -> str:
    return f"previews/{generation_id}-{k}.{EXTENSIONS[output_format]}"


def preview_steps(total: int, count: int) -> set[int]:
    """Step indices (0-based, of `total`) after which to take `count` previews."""
    return {min(total - 1, max(0, round((i + 1) * total / (count + 1)) - 1)) for i in range(count)}


def save_preview(*, generation_id: str, k: int, data: bytes, output_format: str) -> None:
    """Worker side: store preview `k` (once; a redelivered job keeps the first) and tell
    the streaming web request."""
    name = preview_name(generation_id, k, output_format)
    if not storage.exists(name):
        storage.save(name, ContentFile(data))
    notify.publish(partial_key(generation_id, k))


def read_preview(generation_id: str, k: int, output_format: str) -> bytes | None:
    name = preview_name(generation_id, k, output_format)
    if not storage.exists(name):
        return None
    with storage.open(name, "rb") as handle:
        return handle.read()


def delete_previews(generation_id: str, count: int, output_format: str) -> None:
    for k in range(count):
        name = preview_name(generation_id, k, output_format)
        try:
            storage.delete(name)
        except OSError:  # pragma: no cover - best effort
            logger.warning("could not delete preview %s", name, exc_info=True)


def decode_preview(pipe, spec, latents, width: int, height: int):
    """The first image of the batch, decoded from the current latents by the VAE."""
    vae = pipe.vae
    latents = latents[:1]
    if spec.architecture == "flux":
        latents = pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    latents = latents / vae.config.scaling_factor + shift
    decoded = vae.decode(latents.to(vae.dtype), return_dict=False)[0]
    return pipe.image_processor.postprocess(decoded, output_type="pil")[0]


def step_callback(spec, width: int, height: int, count: int, on_partial):
    """A diffusers ``callback_on_step_end`` that calls ``on_partial(k, image)`` `count`
    times, evenly spread over the steps the pipeline actually runs."""
    taken = [0]

    def callback(pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        total = getattr(pipe, "num_timesteps", None) or step + 1
        if taken[0] < count and step in preview_steps(total, count):
            try:
                image = decode_preview(pipe, spec, callback_kwargs["latents"], width, height)
                on_partial(taken[0], image)
            except Exception:  # noqa: BLE001 - a preview must never fail the job
                logger.warning("preview at step %d failed", step, exc_info=True)
            taken[0] += 1
        return callback_kwargs

    return callback
