"""Partial images of a streaming request, decoded from the latents while the steps run.

At evenly spaced denoising steps (``callback_on_step_end``), the batch's first image is
decoded from the *current* latents with the model's own VAE (FLUX latents are unpacked
first). That costs one VAE decode per preview and shows the picture as it is at that step
(noisier early on), at the requested size. Storing and relaying the previews is the
worker's and the web's business (generations/previews.py).
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def preview_steps(total: int, count: int) -> set[int]:
    """Step indices (0-based, of `total`) after which to take `count` previews."""
    return {min(total - 1, max(0, round((i + 1) * total / (count + 1)) - 1)) for i in range(count)}


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
