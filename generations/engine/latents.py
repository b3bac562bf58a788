"""Partial images of a streaming request, decoded from the latents while the steps run.

At evenly spaced denoising steps (``callback_on_step_end``), the batch's first image is
decoded from the *current* latents with the model's own VAE (packed latents are
unpacked first). That costs one VAE decode per preview and shows the picture as it is at that step
(noisier early on), at the requested size. Storing and relaying the previews is the
worker's and the web's business (generations/previews.py).
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


def preview_steps(total: int, count: int) -> set[int]:
    """Step indices (0-based, of `total`) after which to take `count` previews."""
    return {min(total - 1, max(0, round((i + 1) * total / (count + 1)) - 1)) for i in range(count)}


def decode_preview(pipe, spec, latents, width: int, height: int):
    """The first image of the batch, decoded from the current latents by the VAE, the way
    the family's pipeline decodes its final latents."""
    vae = pipe.vae
    latents = latents[:1]
    layout = spec.family.latent_layout
    if layout in ("flux", "qwen"):
        latents = pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)
    elif layout == "flux2":  # tokens in row order, 2x2 patches, batch-normalised
        side = pipe.vae_scale_factor * 2
        latents = latents.transpose(1, 2).reshape(1, -1, height // side, width // side)
        mean = vae.bn.running_mean.view(1, -1, 1, 1).to(latents)
        std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps)
        latents = pipe._unpatchify_latents(latents * std.to(latents) + mean)
    latents = latents.to(vae.dtype)
    if layout == "flux2":
        decoded = vae.decode(latents, return_dict=False)[0]
    elif layout == "qwen":  # a video VAE: per-channel statistics, one frame
        shape = (1, vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents)
        std = torch.tensor(vae.config.latents_std).view(shape).to(latents)
        decoded = vae.decode(latents * std + mean, return_dict=False)[0][:, :, 0]
    else:
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        latents = latents / vae.config.scaling_factor + shift
        decoded = vae.decode(latents, return_dict=False)[0]
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
