"""Per-model accelerations from the catalog (generations/engine/accelerate.py): checked at
catalog load, applied at load on the worker, and the same images with them as without
(same seed, float tolerance)."""

from __future__ import annotations

import dataclasses
import sys
import types

import numpy as np
import pytest
import torch
from django.core.exceptions import ImproperlyConfigured

from generations.catalog import ModelSpec, get_model
from generations.engine import RunRequest, accelerate
from generations.engine.pipelines import Engine

# Noise images from random weights: fused or reordered float arithmetic moves a pixel by
# a step or two of 255 at most.
TOLERANCE = 3


def spec_of(model_id: str, **fields) -> ModelSpec:
    return dataclasses.replace(get_model(model_id), id=f"{model_id}-fast", **fields)


def images(engine: Engine, spec: ModelSpec, seeds=(7,), width=64, height=64) -> np.ndarray:
    result = engine.run(
        RunRequest(
            spec=spec,
            prompt="a red fox",
            negative_prompt="",
            width=width,
            height=height,
            steps=2,
            guidance_scale=spec.default_guidance,
            seeds=list(seeds),
        )
    )
    return np.stack([np.asarray(im, dtype=np.int16) for im in result.images])


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and int(np.abs(a - b).max()) <= TOLERANCE


def engine() -> Engine:
    return Engine("cpu", memory_budget_mb=100_000)


# --- the catalog ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields, message",
    [
        ({"compile": "fastest"}, "compile must be one of"),
        ({"quantize": "int4"}, "quantize must be one of"),
        ({"attention_backend": "flash_hub"}, "attention_backend must be one of"),
        ({"compile": "default", "cpu_offload": True}, "compile and cpu_offload"),
        ({"compile_batch_sizes": (0, 2)}, "compile_batch_sizes"),
        ({"compile_sizes": ("1024",)}, "compile_sizes"),
    ],
)
def test_bad_acceleration_values_fail_at_catalog_load(fields, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        ModelSpec(id="m", source="/models/m", architecture="flux", **fields)


def test_catalog_file_sets_accelerations(settings, tmp_path):
    from generations import catalog

    (tmp_path / "catalog.json").write_text(
        '[{"id": "flux.1-schnell", "compile": "max-autotune", "compile_batch_sizes": [1, 4],'
        ' "compile_sizes": ["1024x1024"], "fuse_qkv": true, "quantize": "fp8"}]'
    )
    settings.MODEL_CATALOG_FILE = str(tmp_path / "catalog.json")
    catalog.catalog.cache_clear()
    try:
        spec = catalog.get_model("flux.1-schnell")
        assert (spec.compile, spec.compile_batch_sizes, spec.quantize) == (
            "max-autotune",
            (1, 4),
            "fp8",
        )
        assert accelerate.compile_shapes(spec) == [(1, 1024, 1024), (4, 1024, 1024)]
    finally:
        catalog.catalog.cache_clear()


def test_compiled_buckets_cover_the_largest_call():
    """Powers of two up to the most images one call carries at that size: a batch at
    batchable sizes, a job's n alone above them."""
    sd = get_model("demo-sd")  # max_n 10, max_batch_images 8, batches up to 512x512
    assert accelerate.compile_shapes(sd) == [(b, 256, 256) for b in (1, 2, 4, 8, 16)]
    flux = dataclasses.replace(get_model("flux.1-schnell"), compile="default")
    assert accelerate.compile_shapes(flux) == [(b, 1024, 1024) for b in (1, 2, 4)]


# --- fuse_qkv, channels_last, attention_backend ------------------------------------------------
@pytest.mark.parametrize("model_id", ["demo-sd", "demo-flux"])
def test_fused_qkv_channels_last_and_attention_backend_keep_the_images(model_id):
    plain = images(engine(), get_model(model_id), seeds=(3, 4))
    spec = spec_of(model_id, fuse_qkv=True, channels_last=True, attention_backend="native")
    fast = engine()
    pipe = fast.pipeline(spec)
    assert accelerate.applied(pipe) == [
        "fuse_qkv",
        "attention_backend=native",
        "channels_last",
    ]
    denoiser = accelerate.denoiser_of(pipe)
    assert any(getattr(m, "fused_projections", False) for m in pipe.vae.modules())
    if model_id == "demo-flux":
        assert any(getattr(m, "fused_projections", False) for m in denoiser.modules())
    conv = next(m for m in pipe.vae.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert same(images(fast, spec, seeds=(3, 4)), plain)


# --- quantize -------------------------------------------------------------------------------
def test_fp8_needs_cuda_compute_capability_8_9(monkeypatch):
    assert "CUDA" in accelerate.fp8_unsupported_reason("cpu")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert "this GPU: 8.0" in accelerate.fp8_unsupported_reason("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert accelerate.fp8_unsupported_reason("cuda:0") is None


def fake_torchao(monkeypatch) -> list:
    """A stand-in torchao: records what quantize_ was asked to do."""
    calls = []
    quantization = types.ModuleType("torchao.quantization")
    quantization.Int8WeightOnlyConfig = lambda: "int8-config"
    quantization.Float8DynamicActivationFloat8WeightConfig = lambda: "fp8-config"
    quantization.quantize_ = lambda module, config: calls.append((type(module).__name__, config))
    package = types.ModuleType("torchao")
    package.quantization = quantization
    monkeypatch.setitem(sys.modules, "torchao", package)
    monkeypatch.setitem(sys.modules, "torchao.quantization", quantization)
    return calls


def test_quantize_goes_through_torchao_where_the_device_supports_it(monkeypatch):
    calls = fake_torchao(monkeypatch)
    int8 = engine().pipeline(spec_of("demo-flux", quantize="int8"))
    assert accelerate.applied(int8) == ["quantize=int8"]
    assert calls == [("FluxTransformer2DModel", "int8-config")]
    # fp8 on a device without it: skipped with the reason; the model still serves.
    fp8 = engine().pipeline(spec_of("demo-flux", quantize="fp8"))
    assert accelerate.applied(fp8)[0].startswith("quantize=fp8 skipped: fp8 needs a CUDA GPU")
    assert len(calls) == 1


def test_quantize_without_torchao_is_skipped_with_the_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao", None)  # import fails
    pipe = engine().pipeline(spec_of("demo-sd", quantize="int8"))
    assert accelerate.applied(pipe) == [
        "quantize=int8 skipped: torchao is not installed (pip install 'imagehub[gpu]')"
    ]


def test_int8_weights_with_the_real_torchao_keep_the_images():
    pytest.importorskip("torchao", reason="torchao is an optional extra (imagehub[gpu])")
    plain = images(engine(), get_model("demo-flux"))
    spec = spec_of("demo-flux", quantize="int8")
    fast = engine()
    assert accelerate.applied(fast.pipeline(spec)) == ["quantize=int8"]
    # int8 weights move the noise a little more than float reordering does.
    assert int(np.abs(images(fast, spec) - plain).mean()) <= 4


# --- compile --------------------------------------------------------------------------------
class FakeCompile:
    """torch.compile's stand-in: runs the function as it is and records each shape it
    would compile (static shapes: one graph per input shape)."""

    def __init__(self):
        self.graphs: list[tuple] = []

    def __call__(self, fn, **options):
        assert options["dynamic"] is False and options["fullgraph"] is True

        def compiled(*args, **kwargs):
            shape = tuple(args[0].shape if args else kwargs["hidden_states"].shape)
            if shape not in self.graphs:
                self.graphs.append(shape)
            return fn(*args, **kwargs)

        return compiled


@pytest.mark.parametrize("model_id", ["demo-sd", "demo-flux"])
def test_compile_at_load_then_no_recompile_for_a_new_batch_size(monkeypatch, model_id):
    """Buckets of 1 and 4 images at 64x64 compile at load; then a batch of 2 pads to 4,
    another size runs eager, and nothing compiles mid-traffic. The images are those of
    the eager model."""
    fake = FakeCompile()
    monkeypatch.setattr(torch, "compile", fake)
    spec = spec_of(model_id, compile="default", compile_batch_sizes=(1, 4))
    spec = dataclasses.replace(spec, compile_sizes=("64x64",))
    fast = engine()
    pipe = fast.pipeline(spec)
    at_load = list(fake.graphs)
    guided = 2 if spec.supports_negative_prompt else 1  # SD: classifier-free guidance
    assert [shape[0] for shape in at_load] == [guided * b for b in (1, 4)]
    router = accelerate.denoiser_of(pipe).forward
    assert isinstance(router, accelerate.ShapeRouter) and router.sealed

    two = images(fast, spec, seeds=(1, 2))
    assert router.calls["padded"] == 2  # two steps, each padded from 2 to 4 images
    wider = images(fast, spec, seeds=(1,), width=128)
    assert fake.graphs == at_load  # no recompiling after load
    assert router.calls["eager"] == 2
    plain = engine()
    assert same(two, images(plain, get_model(model_id), seeds=(1, 2)))
    assert same(wider, images(plain, get_model(model_id), seeds=(1,), width=128))


def test_a_compile_that_fails_leaves_the_model_serving_eager(monkeypatch):
    def broken(fn, **options):
        def compiled(*args, **kwargs):
            raise RuntimeError("Unsupported: graph break in fullgraph mode")

        return compiled

    monkeypatch.setattr(torch, "compile", broken)
    spec = spec_of("demo-flux", compile="default", compile_batch_sizes=(1,))
    fast = engine()
    pipe = fast.pipeline(spec)
    assert accelerate.applied(pipe) == [
        "compile=default skipped: RuntimeError: Unsupported: graph break in fullgraph mode"
    ]
    assert not isinstance(accelerate.denoiser_of(pipe).forward, accelerate.ShapeRouter)
    assert same(images(fast, spec), images(engine(), get_model("demo-flux")))
