"""make bench-gpu: FLUX.1-schnell (or any family, --configs) at full size on one CUDA GPU,
a bare diffusers loop against the service on the same GPU, in one run.

    python -m tests.bench_gpu [--out BENCHMARKS.md] [--tiny] [--count N] [--folder DIR]
                              [--parts eager,compiled,fp8,service] [--results FILE]
                              [--configs DIR]

`--configs DIR`: another family instead of FLUX.1-schnell, from a folder holding a real
model's configs and tokenizer files without its weights (`huggingface_hub.snapshot_download(
repo, allow_patterns=["*.json", "*.txt", "*.model", "*.jinja"])`, e.g. of
black-forest-labs/FLUX.2-dev or Qwen/Qwen-Image-Edit-2509): its full-size architecture
with random weights, made on the GPU in bf16 (generations/engine/family_models), saved, and
run the same way; the catalog entry is its id and source (everything else from its files),
and a model that only edits (Qwen-Image-Edit) gets one reference image of the output's
size, through /v1/images/edits.

1. Builds the FLUX.1-schnell architecture with random bf16 weights directly on the GPU (no
   download; dimensions in ../shared/gpu/README.md), saves it to /dev/shm (kept for the
   next run) and loads it back through `DiffusionPipeline.from_pretrained`, the path the
   service takes.
2. Bare loops in this process, one image per generator, 1024², 4 steps, guidance 0: eager
   at batch 1 and at batch 4; `torch.compile` (fullgraph) + fused QKV + channels_last at
   batch 1 and 4 (compile time reported); the same with fp8 weights (torchao) where the
   GPU supports it. The GPU's peak memory of the eager batch is set beside the model
   cache's activation estimate for it.
3. The service on the same GPU, after the bare pipeline is freed: the embedded default of
   `make run` (gunicorn + uvicorn workers, SQLite, the in-process worker: claim, run,
   encode, store, complete), the model as a catalog entry whose `source` is the saved
   folder, with the accelerations of the best bare loop, warmed before measuring; sync
   requests over HTTP at one client, and under load (two clients per batch slot).

It writes one table to BENCHMARKS.md (its own section; the others stay): seconds per
image, images per second, and each row's ratio to the best bare loop. Targets (issue 19):
service under load >= 0.95x the best bare loop, <= 0.5 s per image.

A whole run takes longer than one call on a lent GPU machine may (compiling alone takes
minutes per batch size): `--parts` runs some of the measurements, and every run adds its
rows to `--results` (a JSON file, default data/bench-gpu-results.json, kept in the ignored
data folder) and writes the table of all the rows gathered so far, e.g.
`--parts eager,compiled` in one call, then `--parts fp8`, then `--parts service`.

`--tiny` runs the same code on the CPU with tiny dimensions in seconds (a check that the
script works, run by tests/test_bench_gpu.py; its figures measure nothing): float32, 64²,
2 steps, and torch.compile with the "eager" backend (dynamo traces, no C++ compiler).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "a lighthouse at dusk, volumetric light"
MODEL_ID = "bench-flux"


@dataclass(frozen=True)
class Dims:
    """The architecture and the run's shapes."""

    name: str
    size: int
    steps: int
    batch: int
    count: int
    transformer: dict
    t5: dict
    clip: dict
    vae_channels: tuple[int, ...]
    vae_layers: int
    max_sequence_length: int


FULL = Dims(
    name="full",
    size=1024,
    steps=4,
    batch=4,
    count=16,
    transformer={
        "num_layers": 19,
        "num_single_layers": 38,
        "attention_head_dim": 128,
        "num_attention_heads": 24,
        "joint_attention_dim": 4096,
        "pooled_projection_dim": 768,
        "axes_dims_rope": (16, 56, 56),
    },
    t5={"d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64},
    clip={
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "projection_dim": 768,
    },
    vae_channels=(128, 256, 512, 512),
    vae_layers=2,
    max_sequence_length=256,
)
TINY = Dims(
    name="tiny",
    size=64,
    steps=2,
    batch=2,
    count=4,
    transformer={
        "num_layers": 1,
        "num_single_layers": 1,
        "attention_head_dim": 16,
        "num_attention_heads": 2,
        "joint_attention_dim": 32,
        "pooled_projection_dim": 32,
        "axes_dims_rope": (4, 6, 6),
    },
    t5={"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 1, "num_heads": 4},
    clip={
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "projection_dim": 32,
    },
    vae_channels=(8, 16, 16, 16),
    vae_layers=1,
    max_sequence_length=32,
)


# --- the model ----------------------------------------------------------------------------------
def build(folder: Path, dims: Dims, device: str, dtype) -> None:
    """FLUX.1-schnell's architecture with random weights, made on `device` in `dtype`
    (12B + 4.8B parameters never pass through the CPU), saved as a diffusers folder."""
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from generations.engine.demo_models import _build_clip_tokenizer, _build_t5_tokenizer

    tokenizer = _build_clip_tokenizer()
    tokenizer_2 = _build_t5_tokenizer(tokenizer)
    default_dtype = torch.get_default_dtype()
    torch.manual_seed(0)
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            transformer = FluxTransformer2DModel(
                patch_size=1, in_channels=64, guidance_embeds=False, **dims.transformer
            )
            text_encoder_2 = T5EncoderModel(
                T5Config(
                    vocab_size=32128,
                    feed_forward_proj="gated-gelu",
                    pad_token_id=tokenizer_2.pad_token_id,
                    eos_token_id=tokenizer_2.eos_token_id,
                    decoder_start_token_id=tokenizer_2.pad_token_id,
                    **dims.t5,
                )
            )
            text_encoder = CLIPTextModel(
                CLIPTextConfig(
                    vocab_size=max(49408, len(tokenizer)),
                    max_position_embeddings=77,
                    hidden_act="quick_gelu",
                    bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.pad_token_id,
                    **dims.clip,
                )
            )
            vae = AutoencoderKL(
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4,
                block_out_channels=dims.vae_channels,
                layers_per_block=dims.vae_layers,
                latent_channels=16,
                norm_num_groups=min(32, dims.vae_channels[0]),
                scaling_factor=0.3611,
                shift_factor=0.1159,
                use_quant_conv=False,
                use_post_quant_conv=False,
            )
    finally:
        torch.set_default_dtype(default_dtype)
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(1000, shift=1.0, use_dynamic_shifting=False),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    (folder / "bench-dims.json").write_text(json.dumps({"dims": dims.name, "dtype": str(dtype)}))
    del pipe, transformer, text_encoder, text_encoder_2, vae
    free_memory(device)


def build_from_configs(configs: Path, folder: Path, dims: Dims, device: str, dtype) -> None:
    """Another family's architecture from its configs, random weights, made on `device`."""
    from generations.engine.family_models import save_random

    save_random(configs, folder, device=device, dtype=dtype)
    marker = {"dims": dims.name, "dtype": str(dtype), "configs": str(configs.resolve())}
    (folder / "bench-dims.json").write_text(json.dumps(marker))
    free_memory(device)


def built(folder: Path, dims: Dims, dtype, configs: Path | None = None) -> bool:
    from generations.engine.demo_models import is_built

    try:
        marker = json.loads((folder / "bench-dims.json").read_text())
    except (OSError, ValueError):
        return False
    wanted = {"dims": dims.name, "dtype": str(dtype)}
    if configs is not None:
        wanted["configs"] = str(configs.resolve())
    return marker == wanted and is_built(folder)


def free_memory(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


# --- the bare loops -----------------------------------------------------------------------------
def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def edits_only(pipe) -> bool:
    """A pipeline that cannot draw from a prompt alone (Qwen-Image-Edit)."""
    from generations.catalog import families

    family = families.family_of(type(pipe).__name__)
    return families.GENERATE not in family.capabilities


class Bare:
    def __init__(self, folder: Path, dims: Dims, device: str, dtype):
        import inspect

        import torch
        from diffusers import DiffusionPipeline

        from generations.engine import processors

        self.torch, self.dims, self.device = torch, dims, device
        found = processors.substitutes(str(folder), local_files_only=True)
        self.pipe = DiffusionPipeline.from_pretrained(
            str(folder), torch_dtype=dtype, **processors.skipped(found)
        )
        self.pipe = processors.attach(self.pipe, found).to(device)
        self.pipe.set_progress_bar_config(disable=True)
        self.takes = set(inspect.signature(self.pipe.__call__).parameters)

    def kwargs(self, batch: int, seed: int) -> dict:
        """One call as the service makes it: one generator per image, guidance 0 (one
        denoiser pass per step), only the arguments the pipeline takes; a pipeline that
        only edits gets a reference image of the output's size and one prompt."""
        from PIL import Image

        from generations.catalog import families

        size = self.dims.size
        kwargs = {
            "prompt": [PROMPT] * batch,
            "width": size,
            "height": size,
            "num_inference_steps": self.dims.steps,
            "generator": [self.torch.Generator("cpu").manual_seed(seed + i) for i in range(batch)],
        }
        guidance = families.family_of(type(self.pipe).__name__).guidance
        if guidance in self.takes:  # true CFG off at 1; distilled guidance 0
            kwargs[guidance] = 1.0 if guidance == "true_cfg_scale" else 0.0
        if "max_sequence_length" in self.takes:
            kwargs["max_sequence_length"] = self.dims.max_sequence_length
        if edits_only(self.pipe):
            kwargs.update(
                prompt=PROMPT,
                num_images_per_prompt=batch,
                image=Image.new("RGB", (size, size), (90, 120, 160)),
            )
        return kwargs

    def call(self, batch: int, seed: int) -> float:
        started = time.perf_counter()
        with self.torch.inference_mode():
            self.pipe(**self.kwargs(batch, seed))
        synchronize(self.device)
        return time.perf_counter() - started

    def seconds_per_image(self, batch: int) -> tuple[float, float]:
        """(seconds per image over the run, seconds of the first call: warm-up/compile)."""
        first = self.call(batch, 0)
        calls = max(1, self.dims.count // batch)
        started = time.perf_counter()
        for i in range(calls):
            self.call(batch, 1000 + i * batch)
        return (time.perf_counter() - started) / (calls * batch), first

    def accelerate(self, *, compile_backend: str, fp8: bool) -> None:
        """What the fastest public FLUX servers do: fused QKV, channels_last VAE, fp8
        weights where the GPU has them, and torch.compile (fullgraph) of the transformer."""
        torch = self.torch
        denoiser = getattr(self.pipe, "transformer", None) or self.pipe.unet
        for module in (denoiser, self.pipe.vae):
            with contextlib.suppress(AttributeError, ValueError, NotImplementedError):
                module.fuse_qkv_projections()  # not every family's modules have it
        with contextlib.suppress(RuntimeError):  # a 3D (video) VAE has no channels_last
            self.pipe.vae.to(memory_format=torch.channels_last)
        if fp8:
            from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, quantize_

            quantize_(denoiser, Float8DynamicActivationFloat8WeightConfig())
        denoiser.forward = torch.compile(
            denoiser.forward, fullgraph=True, dynamic=False, backend=compile_backend
        )

    def peak_memory(self, batch: int) -> int:
        """Device bytes the call needs beyond the weights (CUDA only; 0 elsewhere)."""
        torch = self.torch
        if not self.device.startswith("cuda"):
            return 0
        free_memory(self.device)
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        self.call(batch, 0)
        return torch.cuda.max_memory_allocated() - before

    def close(self) -> None:
        del self.pipe
        free_memory(self.device)


def fp8_supported(device: str) -> str | None:
    """None when fp8 can run here, else why not."""
    from generations.engine.accelerate import fp8_unsupported_reason

    reason = fp8_unsupported_reason(device)
    if reason:
        return reason
    try:
        import torchao  # noqa: F401
    except ImportError:
        return "torchao is not installed"
    return None


PARTS = ("eager", "compiled", "fp8", "service")


def bare_rows(
    folder, dims, device, dtype, *, compile_backend: str, fp8_reason, parts=PARTS
) -> tuple[dict, dict]:
    rows, notes = {}, {}
    if "eager" in parts or "compiled" in parts:
        bare = Bare(folder, dims, device, dtype)
        if "eager" in parts:
            for batch in (1, dims.batch):
                rows[f"bare eager, batch {batch}"], _ = bare.seconds_per_image(batch)
            notes["peak"] = bare.peak_memory(dims.batch)
        if "compiled" in parts:
            bare.accelerate(compile_backend=compile_backend, fp8=False)
            for batch in (1, dims.batch):
                label = f"bare compiled + fused QKV + channels_last, batch {batch}"
                rows[label], notes[f"compile {batch}"] = bare.seconds_per_image(batch)
        bare.close()
    if "fp8" in parts and fp8_reason is None:
        bare = Bare(folder, dims, device, dtype)
        bare.accelerate(compile_backend=compile_backend, fp8=True)
        for batch in (1, dims.batch):
            label = f"bare compiled + fp8 weights, batch {batch}"
            rows[label], notes[f"fp8 compile {batch}"] = bare.seconds_per_image(batch)
        bare.close()
    return rows, notes


# --- the service --------------------------------------------------------------------------------
def catalog_entry(folder: Path, dims: Dims, *, tiny: bool, fp8: bool, configs=None) -> dict:
    entry = {
        "id": MODEL_ID,
        "source": str(folder),
        "default_size": [dims.size, dims.size],
        "min_size": dims.size,
        "max_size": dims.size,
        "max_n": dims.batch,
        "default_steps": dims.steps,
        "max_steps": 8,
        # As the bare loop: guidance 0, no negative prompt (one denoiser pass per step).
        "default_guidance": 0.0,
        "supports_negative_prompt": False,
        "max_sequence_length": dims.max_sequence_length,
        "max_batch_images": dims.batch,
        "max_batch_pixels": dims.size * dims.size,
        "fuse_qkv": True,
        "channels_last": True,
    }
    if configs is None:  # the FLUX.1-schnell build; another family's comes from its files
        entry.update(
            architecture="flux",
            description="FLUX.1-schnell architecture, random weights (make bench-gpu)",
            size_multiple=16,
        )
    else:
        entry["description"] = f"{configs.name} architecture, random weights (make bench-gpu)"
    if not tiny:  # on the CPU check, the service's compile is tests/generations' business
        entry.update(compile="default", compile_batch_sizes=[1, 2, dims.batch])
    if fp8:
        entry["quantize"] = "fp8"
    return entry


@contextlib.contextmanager
def service(entry: dict, device: str, workdir: Path):
    """`make run`'s embedded default on this machine: yields (base url, api key)."""
    import requests

    (workdir / "catalog.json").write_text(json.dumps([entry]))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "imagehub.settings",
        "IMAGEHUB_DATA_DIR": str(workdir),
        "DJANGO_SECRET_KEY": uuid.uuid4().hex,
        "HF_HUB_OFFLINE": "1",
        "IMAGEHUB_MODEL_CATALOG": str(workdir / "catalog.json"),
        "IMAGEHUB_DEFAULT_MODEL": MODEL_ID,
        "IMAGEHUB_WARMUP_MODELS": MODEL_ID,
        "IMAGEHUB_DEVICE": device,
        # Warm-up compiles every bucket (minutes on a GPU) while the server already
        # answers: the first sync request may wait for it.
        "IMAGEHUB_SYNC_WAIT_SECONDS": "1800",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    for name in ("DATABASE_URL", "DRAMATIQ_BROKER_URL", "STORAGE"):
        env.pop(name, None)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=ROOT)
    key = subprocess.run(
        [*manage, "create_api_key", "bench@example.com", "--credits", str(10**15)],
        env=env,
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.splitlines()[-1]
    from tests.processes import free_port

    port = free_port()
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "imagehub.asgi"),
            *("--bind", f"127.0.0.1:{port}", "--workers", "1"),
            *("--worker-class", "imagehub.server.Worker", "--timeout", "900"),
            *("--keep-alive", "75"),
        ],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start; see {workdir / 'server.log'}")
            time.sleep(0.2)
        yield base, key
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def reference_data_url(size: int) -> str:
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (90, 120, 160)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def service_rows(base: str, key: str, dims: Dims, *, edits: bool = False) -> tuple[dict, dict]:
    """Seconds per image at one client and under load (two clients per batch slot)."""
    import requests

    body = {"model": MODEL_ID, "prompt": PROMPT, "size": f"{dims.size}x{dims.size}",
            "num_inference_steps": dims.steps}  # fmt: skip
    url = f"{base}/v1/images/generations"
    if edits:  # one reference image of the output's size, as the bare loop
        url = f"{base}/v1/images/edits"
        body["images"] = [{"image_url": reference_data_url(dims.size)}]

    def generate(session, seed: int) -> float:
        response = session.post(url, timeout=1800, json={**body, "seed": seed})
        response.raise_for_status()
        assert len(response.json()["data"]) == 1
        return response.json()["timings"]["inference"]

    rows, notes = {}, {}
    for clients in (1, 2 * dims.batch):
        sessions = [requests.Session() for _ in range(clients)]
        for session in sessions:
            session.headers["Authorization"] = f"Bearer {key}"
        started = time.perf_counter()
        generate(sessions[0], 0)  # after warm-up: a first request pays for nothing left
        notes[f"first {clients}"] = time.perf_counter() - started
        count = max(dims.count, clients)
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            seeds = range(1000, 1000 + count)
            list(pool.map(generate, [sessions[i % clients] for i in range(count)], seeds))
        label = "service, one client" if clients == 1 else f"service, {clients} clients"
        rows[label] = (time.perf_counter() - started) / count
    return rows, notes


# --- the report ---------------------------------------------------------------------------------
def machine(device: str) -> str:
    import diffusers
    import torch

    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        gpu = f"{props.name} ({props.total_memory / 2**30:.0f} GiB, compute capability "
        gpu += f"{props.major}.{props.minor}), CUDA {torch.version.cuda}"
    else:
        gpu = f"no GPU: the CPU ({platform.machine()}, {os.cpu_count()} cores)"
    return f"{gpu}; torch {torch.__version__}, diffusers {diffusers.__version__}"


def report(
    dims: Dims, device: str, rows: dict, notes: dict, fp8_reason, estimate: int, model: str = ""
) -> str:
    best_label = min((k for k in rows if k.startswith("bare")), key=lambda k: rows[k])
    best = rows[best_label]
    tiny = dims.name == "tiny"
    title = f"GPU: {model or 'FLUX.1-schnell'} at full size (make bench-gpu)"
    if tiny:
        title = "GPU bench on the CPU at tiny dimensions (a check of the script, not figures)"
        title += f": {model}" if model else ""
    lines = [
        f"## {title}",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {machine(device)}. "
        f"{dims.size}², {dims.steps} steps, guidance 0, random weights "
        f"({'float32' if tiny else 'bf16'}), one generator per image. Ratio: images per "
        f"second against the best bare loop ({best_label}).",
        "",
        "| what | s per image | images/s | vs best bare |",
        "|---|---|---|---|",
    ]
    for label, seconds in rows.items():
        lines.append(f"| {label} | {seconds:.3f} | {1 / seconds:.2f} | {best / seconds:.2f}× |")
    under_load = [v for k, v in rows.items() if k.startswith("service, ") and "one" not in k]
    lines.append("")
    compiles = ", ".join(f"{k} {v:.0f} s" for k, v in notes.items() if "compile" in k)
    lines.append(f"First call of each compiled bare loop (compiling included): {compiles}.")
    if fp8_reason:
        lines.append(f"fp8 rows missing: {fp8_reason}.")
    if notes.get("peak"):
        lines.append(
            f"Activation memory of the eager batch of {dims.batch}: {notes['peak'] / 2**30:.2f}"
            f" GiB measured; the model cache's estimate for its largest call "
            f"{estimate / 2**30:.2f} GiB."
        )
    if under_load:
        ratio = best / under_load[0]
        met = ratio >= 0.95 and under_load[0] <= 0.5
        lines.append(
            f"Targets (service under load ≥ 0.95× the best bare loop, ≤ 0.5 s per image): "
            f"{ratio:.2f}×, {under_load[0]:.3f} s per image: {'met' if met else 'not met'}."
        )
    return "\n".join(lines) + "\n"


def estimate_for(entry: dict, folder: Path, dtype, workdir: Path) -> int:
    """The model cache's activation headroom for the service's entry (its formula, on
    the saved configs, with the entry as the service's catalog reads it)."""
    from types import SimpleNamespace

    from django.conf import settings

    from generations import catalog
    from generations.engine.cache import activation_bytes

    path = workdir / "estimate-catalog.json"
    path.write_text(json.dumps([entry]))
    settings.MODEL_CATALOG_FILE = str(path)
    catalog.catalog.cache_clear()

    def config(name: str) -> SimpleNamespace | None:
        path = folder / name / "config.json"
        return SimpleNamespace(**json.loads(path.read_text())) if path.exists() else None

    spec = catalog.get_model(entry["id"])
    pipe = SimpleNamespace(
        dtype=dtype,
        vae=SimpleNamespace(config=config("vae")),
        transformer=SimpleNamespace(config=config("transformer"))
        if config("transformer")
        else None,
        unet=SimpleNamespace(config=config("unet")) if config("unet") else None,
    )
    return activation_bytes(spec, pipe)


def _setting(dims: Dims, device: str, model: str) -> dict:
    setting = {"dims": dims.__dict__, "machine": machine(device), "model": model}
    return json.loads(json.dumps(setting))


def gathered(results: Path, dims: Dims, device: str, model: str) -> tuple[dict, dict]:
    """The rows and notes earlier runs (--parts) measured of this model at these
    dimensions on this machine (another GPU's, model's or dimensions' are dropped)."""
    if not results.exists():
        return {}, {}
    saved = json.loads(results.read_text())
    if saved.get("setting") != _setting(dims, device, model):
        return {}, {}
    return saved["rows"], saved["notes"]


def gather(results: Path, dims: Dims, device: str, model: str, rows: dict, notes: dict) -> dict:
    """Keep the rows and notes in `results`; returns the rows in the table's order."""
    results.parent.mkdir(parents=True, exist_ok=True)
    order = {label: i for i, label in enumerate(_row_order(dims))}
    rows = dict(sorted(rows.items(), key=lambda item: order.get(item[0], len(order))))
    saved = {"setting": _setting(dims, device, model), "rows": rows, "notes": notes}
    results.write_text(json.dumps(saved))
    return rows


def _row_order(dims: Dims) -> list[str]:
    labels = []
    for kind in ("bare eager", "bare compiled + fused QKV + channels_last"):
        labels += [f"{kind}, batch {batch}" for batch in (1, dims.batch)]
    labels += [f"bare compiled + fp8 weights, batch {batch}" for batch in (1, dims.batch)]
    return [*labels, "service, one client", f"service, {2 * dims.batch} clients"]


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description="FLUX.1-schnell on a GPU: bare vs service")
    parser.add_argument("--tiny", action="store_true", help="CPU, tiny dimensions (a check)")
    parser.add_argument("--out", type=Path, help="merge the table into this Markdown file")
    parser.add_argument("--count", type=int, help="images per measurement")
    parser.add_argument("--folder", type=Path, help="where the random-weight model is saved")
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"which measurements to run this time, of {','.join(PARTS)} (default: all)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="JSON file the rows of every run are gathered in (default: "
        "data/bench-gpu-results.json; with --tiny, a fresh temporary file)",
    )
    parser.add_argument(
        "--configs", type=Path, help="another family: a folder of a model's configs, no weights"
    )
    args = parser.parse_args(argv)
    parts = tuple(part.strip() for part in args.parts.split(",") if part.strip())
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown --parts {sorted(unknown)}; choose from {','.join(PARTS)}")
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagehub.settings")
    import django

    django.setup()
    import torch

    dims = TINY if args.tiny else FULL
    if args.count:
        dims = Dims(**{**dims.__dict__, "count": args.count})
    if args.tiny:
        device, dtype, backend = "cpu", torch.float32, "eager"
    elif torch.cuda.is_available():
        device, dtype, backend = "cuda", torch.bfloat16, "inductor"
    else:
        parser.error("no CUDA GPU here; --tiny runs the check on the CPU")
    workdir = Path(tempfile.mkdtemp(prefix="imagehub-bench-gpu-"))
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() and not args.tiny else workdir
    name = args.configs.resolve().name if args.configs else "flux-schnell"
    folder = args.folder or shm / f"imagehub-{name}-{dims.name}"
    if not built(folder, dims, dtype, args.configs):
        started = time.perf_counter()
        if args.configs:
            build_from_configs(args.configs, folder, dims, device, dtype)
        else:
            build(folder, dims, device, dtype)
        print(f"built {folder} in {time.perf_counter() - started:.0f} s", flush=True)
    fp8_reason = fp8_supported(device) if not args.tiny else "not run on the CPU check"
    results = args.results or (
        workdir / "results.json" if args.tiny else ROOT / "data" / "bench-gpu-results.json"
    )
    rows, notes = gathered(results, dims, device, name)
    measured, measured_notes = bare_rows(
        folder, dims, device, dtype, compile_backend=backend, fp8_reason=fp8_reason, parts=parts
    )
    rows.update(measured)
    notes.update(measured_notes)
    entry = catalog_entry(
        folder, dims, tiny=args.tiny, fp8=fp8_reason is None, configs=args.configs
    )
    pipeline = json.loads((folder / "model_index.json").read_text())["_class_name"]
    from generations.catalog import families

    edits = families.GENERATE not in families.family_of(pipeline).capabilities
    if "service" in parts:
        # What is measured so far is kept if the service fails.
        gather(results, dims, device, name, rows, notes)
        with service(entry, device, workdir) as (base, key):
            served, served_notes = service_rows(base, key, dims, edits=edits)
        rows.update(served)
        notes.update(served_notes)
    rows = gather(results, dims, device, name, rows, notes)
    print(f"rows gathered in {results}: {', '.join(rows)}", flush=True)
    if not any(label.startswith("bare") for label in rows):
        print("no bare loop measured yet: run --parts eager (or compiled) for the table")
        return ""
    estimate = estimate_for(entry, folder, dtype, workdir)
    model = f"{name} ({pipeline})" if args.configs else ""
    text = report(dims, device, rows, notes, fp8_reason, estimate, model)
    print(text)
    if args.out:
        from tests.benchfile import merge_report

        merge_report(args.out, text)
    return text


if __name__ == "__main__":
    main()
