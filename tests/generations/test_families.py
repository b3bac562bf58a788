"""Every model family through the API, each a tiny random-weight build of its real pipeline
class (generations/engine/family_models/), loaded by `from_pretrained` from the data dir
like a downloaded model. Built once and kept until the builders change."""

from __future__ import annotations

import base64
import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from django.conf import settings
from imagefiles import alpha_mask, gradient_png, upload
from PIL import Image, ImageChops

from accounts.models import Organization
from generations import catalog

pytestmark = pytest.mark.django_db(transaction=True)

# model id -> (tiny build, capabilities /v1/models lists, latent pixels per token side)
FAMILIES = {
    "t-sdxl": ("tiny-sdxl", "generate edit_image_to_image inpaint variation partial_images", 8),
    "t-sd3": ("tiny-sd3", "generate edit_image_to_image inpaint variation partial_images", 16),
    "t-kontext": ("tiny-flux-kontext", "generate edit_instruction partial_images", 16),
    "t-chroma": (
        "tiny-chroma",
        "generate edit_image_to_image inpaint variation partial_images",
        16,
    ),
    "t-z-image": (
        "tiny-z-image",
        "generate edit_image_to_image inpaint variation partial_images",
        16,
    ),
    "t-flux2": ("tiny-flux2-dev", "generate edit_instruction partial_images", 16),
    "t-flux2-klein": ("tiny-flux2-klein", "generate edit_instruction partial_images", 16),
    "t-qwen-image": (
        "tiny-qwen-image",
        "generate edit_image_to_image inpaint variation partial_images",
        16,
    ),
    "t-qwen-edit": ("tiny-qwen-image-edit", "edit_instruction partial_images", 16),
    "t-qwen-edit-plus": ("tiny-qwen-image-edit-plus", "edit_instruction partial_images", 16),
    # A family with no code of its own here: everything from its files.
    "t-pixart": ("tiny-pixart-sigma", "generate", 16),
}
GENERATORS = [m for m, f in FAMILIES.items() if "generate" in f[1].split()]
EDITS = ("edit_image_to_image", "inpaint", "variation")


@pytest.fixture(scope="session")
def family_models(django_db_blocker) -> Path:
    """The tiny builds in the data dir, rebuilt only when their builders changed."""
    from generations.engine.family_models import build_tiny, tiny_built

    root = Path(settings.DEMO_MODELS_DIR) / "families"
    root.mkdir(parents=True, exist_ok=True)
    for build, _, _ in FAMILIES.values():
        target = root / build
        if tiny_built(build, target):
            continue
        staging = Path(tempfile.mkdtemp(prefix=f".{build}-", dir=root))
        build_tiny(build, staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return root


@pytest.fixture
def families(settings, tmp_path, family_models):
    """The catalog with one model per family. Only PixArt's entry is id and source alone;
    the others cap the text length so the tiny encoders stay fast."""
    entries = [{"id": "t-pixart", "source": str(family_models / "tiny-pixart-sigma")}]
    for model, (build, _, _) in FAMILIES.items():
        if model != "t-pixart":
            entries.append(
                {"id": model, "source": str(family_models / build), "max_sequence_length": 32}
            )
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(entries))
    settings.MODEL_CATALOG_FILE = str(path)
    catalog.catalog.cache_clear()
    yield
    catalog.catalog.cache_clear()


def post(api, url, body, **kwargs):
    return api.post(url, body, format=kwargs.pop("format", "json"))


def gen(api, **body):
    return post(api, "/v1/images/generations", body)


def multipart(api, url="/v1/images/edits", **body):
    return api.post(url, body, format="multipart")


def square():
    return upload(gradient_png((64, 64)))


def decode(item) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))).convert("RGB")


def nearly_equal(a: Image.Image, b: Image.Image) -> bool:
    """Same picture up to float rounding (a batched matmul may flip a pixel by one)."""
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    return a.size == b.size and max(high for _, high in diff.getextrema()) <= 2


def ok(response) -> dict:
    assert response.status_code == 200, response.content
    return response.json()


def error_param(response, status: int = 400) -> str:
    assert response.status_code == status, response.content
    return response.json()["error"]["param"]


BASE = {"size": "64x64", "num_inference_steps": 2, "response_format": "b64_json"}


@pytest.mark.parametrize("model", GENERATORS)
def test_family_generates_with_per_image_seeds_and_token_usage(api, families, model):
    _, capabilities, latent = FAMILIES[model]
    listed = ok(api.get(f"/v1/models/{model}"))
    assert listed["capabilities"] == capabilities.split()
    body = ok(
        post(
            api,
            "/v1/images/generations",
            {**BASE, "model": model, "prompt": "a cat", "n": 2, "seed": 7},
        )
    )
    images = [decode(item) for item in body["data"]]
    assert [im.size for im in images] == [(64, 64)] * 2
    assert [item["seed"] for item in body["data"]] == [7, 8]
    assert images[0].tobytes() != images[1].tobytes()
    usage = body["usage"]
    assert usage["output_tokens"] == 2 * (64 // latent) ** 2
    assert usage["input_tokens_details"]["text_tokens"] > 0
    # Image 2 is its own seed's image: asked alone, it comes back the same.
    again = ok(
        post(api, "/v1/images/generations", {**BASE, "model": model, "prompt": "a cat", "seed": 8})
    )
    assert nearly_equal(decode(again["data"][0]), images[1])


@pytest.mark.parametrize("model", [m for m in GENERATORS if "partial" in FAMILIES[m][1]])
def test_family_streams_partial_images(api, families, model):
    response = post(
        api,
        "/v1/images/generations",
        {**BASE, "model": model, "prompt": "p", "stream": True, "partial_images": 1, "seed": 1},
    )
    assert response.status_code == 200, response.content
    text = b"".join(response.streaming_content).decode()
    names = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("event:")]
    assert names == ["image_generation.partial_image", "image_generation.completed"]


@pytest.mark.parametrize(
    "model, capability",
    [(m, c) for m, f in FAMILIES.items() for c in EDITS if c in f[1].split()],
)
def test_family_edits_it_lists(api, families, model, capability):
    body = {"model": model, "prompt": "p", "num_inference_steps": 2, "response_format": "b64_json"}
    body["image"] = upload(gradient_png((64, 64)))
    url = "/v1/images/variations" if capability == "variation" else "/v1/images/edits"
    if capability == "variation":
        body.pop("prompt")
    if capability == "inpaint":
        body["mask"] = upload(alpha_mask((64, 64), hole=(0, 0, 32, 32)))
    data = ok(api.post(url, body, format="multipart"))["data"]
    result = decode(data[0])
    assert result.size == (64, 64)
    if capability == "inpaint":
        # The hole is repainted; the rest comes back as sent.
        sent = Image.open(io.BytesIO(gradient_png((64, 64)))).convert("RGB")
        diff = ImageChops.difference(result, sent)
        assert diff.crop((0, 0, 32, 32)).getbbox() is not None
        assert diff.crop((32, 0, 64, 64)).getbbox() is None


def test_batched_calls_give_each_request_its_own_images(families):
    """Two requests in one pipeline call get the images they get alone."""
    from generations.engine import RunRequest
    from generations.engine.pipelines import Engine

    engine = Engine(device="cpu")
    for model in GENERATORS:
        spec = catalog.get_model(model)

        def request(prompt, seeds, spec=spec):
            return RunRequest(spec=spec, prompt=prompt, negative_prompt="", width=64,
                              height=64, steps=2, guidance_scale=spec.default_guidance,
                              seeds=seeds)  # fmt: skip

        batched, _ = engine.run_batch([request("a cat", [1]), request("a red dog", [2, 3])])
        alone = engine.run(request("a red dog", [2, 3])).images
        assert [len(images) for images in batched] == [1, 2]
        for one, other in zip(batched[1], alone, strict=True):
            assert nearly_equal(one, other), model


def test_instruction_edit_uses_every_reference_and_counts_their_tokens(api, families):
    images = [upload(gradient_png((80, 64))), upload(gradient_png((64, 64)))]
    body = ok(
        api.post(
            "/v1/images/edits",
            {"model": "t-flux2-klein", "prompt": "put the cat on the sofa", "image[]": images,
             "num_inference_steps": 2, "response_format": "b64_json", "seed": 3},
            format="multipart",
        )
    )  # fmt: skip
    # FLUX.2 feeds references at their size snapped to 16: (80/16)(64/16) + (64/16)^2.
    assert body["usage"]["input_tokens_details"]["image_tokens"] == 5 * 4 + 4 * 4
    assert decode(body["data"][0]).size == (80, 64)
    one = ok(
        api.post(
            "/v1/images/edits",
            {"model": "t-flux2-klein", "prompt": "put the cat on the sofa",
             "image[]": [upload(gradient_png((80, 64)))], "num_inference_steps": 2,
             "response_format": "b64_json", "seed": 3},
            format="multipart",
        )
    )  # fmt: skip
    # The second reference changes the picture: it reached the model.
    assert decode(one["data"][0]).tobytes() != decode(body["data"][0]).tobytes()


def test_kontext_edits_one_image_by_instruction(api, families):
    body = ok(
        post(
            api,
            "/v1/images/edits",
            {"model": "t-kontext", "prompt": "make the sky purple", "size": "64x64",
             "images": [{"image_url": "data:image/png;base64,"
                         + base64.b64encode(gradient_png((64, 64))).decode()}],
             "num_inference_steps": 2, "response_format": "b64_json"},
        )
    )  # fmt: skip
    # Kontext resizes a square reference to 1024x1024 before encoding it: 64 x 64 tokens.
    assert body["usage"]["input_tokens_details"]["image_tokens"] == 64 * 64
    assert decode(body["data"][0]).size == (64, 64)


# model id -> (the most references one edit takes, image tokens of an 80x64 and a 64x64
# reference at the size the pipeline feeds them to its VAE)
SEVERAL = {
    # FLUX.2 keeps a reference's size (up to 1 MP), snapped to 16: (80/16)(64/16) + 4 x 4.
    "t-flux2": (10, 5 * 4 + 4 * 4),
    # Qwen-Image-Edit Plus resizes each to about 1 MP in multiples of 32: 1152x928 and
    # 1024x1024.
    "t-qwen-edit-plus": (3, (1152 // 16) * (928 // 16) + (1024 // 16) ** 2),
}


def edit_body(model: str, images: list, **fields) -> dict:
    body = {"model": model, "prompt": "put the cat from image 2 on the sofa of image 1",
            "image[]": images, "num_inference_steps": 2, "response_format": "b64_json"}  # fmt: skip
    return {**body, **fields}


@pytest.mark.parametrize("model", SEVERAL)
def test_instruction_edit_takes_references_up_to_the_model_limit(api, families, tenant, model):
    limit, tokens = SEVERAL[model]
    assert ok(api.get(f"/v1/models/{model}"))["max_input_images"] == limit
    two = [upload(gradient_png((80, 64))), upload(gradient_png((64, 64)))]
    body = ok(multipart(api, **edit_body(model, two, n=2, seed=3, size="64x64")))
    assert body["usage"]["input_tokens_details"]["image_tokens"] == tokens
    assert body["usage"]["output_tokens"] == 2 * 4 * 4
    assert [item["seed"] for item in body["data"]] == [3, 4]
    images = [decode(item) for item in body["data"]]
    assert images[0].tobytes() != images[1].tobytes()
    two = [upload(gradient_png((80, 64))), upload(gradient_png((64, 64)))]
    alone = ok(multipart(api, **edit_body(model, two, seed=4, size="64x64")))
    assert nearly_equal(decode(alone["data"][0]), images[1])
    one = ok(multipart(api, **edit_body(model, [upload(gradient_png((80, 64)))], seed=4,
                                        size="64x64")))  # fmt: skip
    # The second reference reached the model: without it the picture changes.
    assert decode(one["data"][0]).tobytes() != images[1].tobytes()
    generations = tenant.org.generations.count()
    too_many = [upload(gradient_png((64, 64))) for _ in range(limit + 1)]
    assert error_param(multipart(api, **edit_body(model, too_many))) == "image"
    assert tenant.org.generations.count() == generations


def test_qwen_image_edit_takes_one_reference(api, families, tenant):
    assert ok(api.get("/v1/models/t-qwen-edit"))["max_input_images"] == 1
    two = [upload(gradient_png((64, 64))), upload(gradient_png((64, 64)))]
    assert error_param(multipart(api, **edit_body("t-qwen-edit", two))) == "image"
    assert not tenant.org.generations.exists()
    body = ok(multipart(api, **edit_body("t-qwen-edit", [upload(gradient_png((80, 64)))])))
    # Resized to about 1 MP in multiples of 32 (1152x928) before its VAE: 72 x 58 tokens.
    assert body["usage"]["input_tokens_details"]["image_tokens"] == 72 * 58
    assert decode(body["data"][0]).size == (80, 64)
    generated = gen(api, model="t-qwen-edit", prompt="a cat")
    assert error_param(generated) == "model"


@pytest.mark.parametrize("model", ["t-flux2", "t-qwen-edit", "t-qwen-edit-plus"])
def test_instruction_edits_stream_partial_images(api, families, model):
    body = edit_body(model, [upload(gradient_png((64, 64)))], stream="true", partial_images=1)
    response = multipart(api, **body)
    assert response.status_code == 200, response.content
    text = b"".join(response.streaming_content).decode()
    names = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("event:")]
    assert names == ["image_edit.partial_image", "image_edit.completed"]
    partial = next(
        json.loads(line[len("data: "):]) for line in text.splitlines()
        if line.startswith("data:") and "partial_image" in line
    )  # fmt: skip
    assert Image.open(io.BytesIO(base64.b64decode(partial["b64_json"]))).size == (64, 64)


def test_what_a_model_cannot_do_is_a_400_before_anything_is_held(api, families, tenant):
    balance = Organization.objects.get(pk=tenant.org.pk).credit_balance
    edit = {"prompt": "p", "num_inference_steps": 2}
    kontext = {**edit, "model": "t-kontext"}
    assert error_param(multipart(api, **kontext, **{"image[]": [square(), square()]})) == "image"
    mask = upload(alpha_mask((64, 64), hole=(0, 0, 32, 32)))
    assert error_param(multipart(api, **kontext, image=square(), mask=mask)) == "mask"
    assert error_param(multipart(api, **kontext, image=square(), strength=0.5)) == "strength"
    # FLUX.2 refuses references under 64 pixels a side or over 8:1 (its image processor).
    klein = {**edit, "model": "t-flux2-klein"}
    for size in ((48, 64), (576, 64)):
        assert error_param(multipart(api, **klein, image=upload(gradient_png(size)))) == "image"
    assert error_param(multipart(api, **edit, model="t-pixart", image=square())) == "image"
    variations = "/v1/images/variations"
    assert error_param(multipart(api, variations, model="t-flux2-klein", image=square())) == "model"
    streamed = gen(api, model="t-pixart", prompt="p", stream=True, partial_images=1)
    assert error_param(streamed) == "partial_images"
    negative = gen(api, model="t-kontext", prompt="p", negative_prompt="n")
    assert error_param(negative) == "negative_prompt"
    assert Organization.objects.get(pk=tenant.org.pk).credit_balance == balance
    assert not tenant.org.generations.exists()


def test_a_family_without_code_of_its_own_takes_everything_from_its_files(api, families):
    spec = catalog.get_model("t-pixart")
    # PixArtSigmaPipeline.__call__'s defaults, its VAE (8) x its patch size (2).
    assert (spec.default_steps, spec.default_guidance) == (20, 4.5)
    assert spec.supports_negative_prompt and spec.latent_pixels == 16
    assert spec.as_openai()["architecture"] == "PixArtSigmaPipeline"
    body = ok(
        post(
            api,
            "/v1/images/generations",
            {**BASE, "model": "t-pixart", "prompt": "a cat", "negative_prompt": "blur"},
        )
    )
    assert body["usage"]["output_tokens"] == 16


def test_edit_only_family_refuses_prompt_only_generation(api, extra_model, tenant):
    extra_model(
        id="qwen-edit", source="Qwen/Qwen-Image-Edit-2509", architecture="qwen-image-edit-plus"
    )
    model = ok(api.get("/v1/models/qwen-edit"))
    assert model["capabilities"] == ["edit_instruction", "partial_images"]
    assert model["max_input_images"] == 3
    assert (
        error_param(post(api, "/v1/images/generations", {"model": "qwen-edit", "prompt": "p"}))
        == "model"
    )
    assert not tenant.org.generations.exists()


def test_prices_follow_what_the_model_denoises(extra_model):
    from generations.pricing import request_price

    extra_model(id="flux2", source="black-forest-labs/FLUX.2-dev", architecture="flux2",
                price_per_megapixel_step=1000)  # fmt: skip
    flux2, sd = catalog.get_model("flux2"), catalog.get_model("sd-1.5")
    assert flux2.output_tokens(1024, 1024) == (1024 // 16) ** 2
    assert sd.output_tokens(512, 512) == (512 // 8) ** 2
    _, big = request_price(flux2, width=1024, height=1024, steps=28, n=1)
    _, small = request_price(flux2, width=512, height=512, steps=28, n=1)
    # price_per_megapixel_step x megapixel-steps, rounded up: 4x the pixels, 4x the price.
    assert (big, small) == (29_361, 7_341)


def test_memory_estimates_follow_each_family(families):
    """The cache's activation headroom reads each family's geometry (engine/cache.py)."""
    import dataclasses

    from generations.engine.cache import activation_bytes, largest_call
    from generations.engine.pipelines import Engine

    engine = Engine(device="cpu")
    flux2 = catalog.get_model("t-flux2")
    pipe = engine.pipeline(flux2)
    one = dataclasses.replace(flux2, max_input_images=1)
    images, _ = largest_call(flux2)
    # Nine more 1 MP references of 64 x 64 tokens each, through a 2 x 16 wide transformer,
    # float32, 24 live tensors, no guidance batch (FLUX.2 [dev] takes no negative prompt).
    extra = images * 9 * 64 * 64 * 32 * 4 * 24
    assert activation_bytes(flux2, pipe) - activation_bytes(one, pipe) == extra
    # Qwen-Image runs its negative prompt as a second call: no doubled batch. SD3 batches.
    for model, doubles in (("t-qwen-image", False), ("t-sd3", True)):
        spec = catalog.get_model(model)
        pipe = engine.pipeline(spec)
        plain = dataclasses.replace(spec, supports_negative_prompt=False)
        assert (activation_bytes(spec, pipe) > activation_bytes(plain, pipe)) is doubles, model
    # Z-Image's width is its `dim` (32 here), not a UNet's default.
    z_image = catalog.get_model("t-z-image")
    pipe = engine.pipeline(z_image)
    images, pixels = largest_call(z_image)
    vae = images * pixels * 8 * 4 * 8  # the VAE's first block: 8 channels
    denoiser = images * 2 * (pixels // 16**2) * 32 * 4 * 24  # its CFG is one batched call
    assert activation_bytes(z_image, pipe) == vae + denoiser


def test_dtype_on_a_gpu_is_the_family_one_unless_the_gpu_lacks_bf16(families, monkeypatch):
    import dataclasses

    import torch

    from generations.engine import families as engine_families

    qwen, sd = catalog.get_model("t-qwen-image"), catalog.get_model("sd-1.5")
    assert engine_families.dtype_for(qwen, "cpu") is torch.float32
    monkeypatch.setattr(engine_families, "_bf16_supported", lambda device: True)
    assert engine_families.dtype_for(qwen, "cuda") is torch.bfloat16
    assert engine_families.dtype_for(sd, "cuda") is torch.float16
    monkeypatch.setattr(engine_families, "_bf16_supported", lambda device: False)
    assert engine_families.dtype_for(qwen, "cuda") is torch.float16
    forced = dataclasses.replace(qwen, dtype="bfloat16")
    assert engine_families.dtype_for(forced, "cuda") is torch.bfloat16


def test_a_full_architecture_from_configs_alone_serves_through_the_api(
    api, settings, tmp_path, family_models
):
    """What `make bench-gpu --configs` builds: a model folder of configs and tokenizer
    files (no weights) made into random weights (family_models.save_random), served with
    only id and source. Qwen-Image-Edit Plus: its Qwen2VLProcessor comes from its files."""
    from generations.engine.family_models import save_random

    configs = tmp_path / "configs"
    shutil.copytree(family_models / "tiny-qwen-image-edit-plus", configs)
    for weights in configs.rglob("*.safetensors"):
        weights.unlink()
    save_random(configs, tmp_path / "random")
    index = json.loads((tmp_path / "random" / "model_index.json").read_text())
    assert index["processor"] == ["transformers", "Qwen2VLProcessor"]
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps([{"id": "random-edit", "source": str(tmp_path / "random")}]))
    settings.MODEL_CATALOG_FILE = str(path)
    catalog.catalog.cache_clear()
    try:
        listed = ok(api.get("/v1/models/random-edit"))
        assert listed["capabilities"] == ["edit_instruction", "partial_images"]
        body = ok(multipart(api, **edit_body("random-edit", [square(), square()], size="64x64")))
        assert decode(body["data"][0]).size == (64, 64)
        assert body["usage"]["input_tokens_details"]["image_tokens"] == 2 * 64 * 64
    finally:
        catalog.catalog.cache_clear()


def test_processors_without_torchvision_come_from_the_model_files(tmp_path, family_models):
    """FLUX.2 [dev]'s PixtralProcessor is loaded as its tokenizer, chat template included
    wherever the checkpoint keeps it; Qwen-Image-Edit's Qwen2VLProcessor as itself without
    a video processor (generations/engine/processors.py)."""
    from generations.engine import processors

    assert processors.torchvision_missing()  # this project's environment
    flux2 = tmp_path / "flux2"
    shutil.copytree(family_models / "tiny-flux2-dev", flux2)
    template = (flux2 / "tokenizer" / "chat_template.jinja").read_text()
    (flux2 / "tokenizer" / "chat_template.jinja").unlink()
    found = processors.substitutes(str(flux2), local_files_only=True)
    assert found["tokenizer"].chat_template is None  # where the template was, it is gone
    (flux2 / "tokenizer" / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    tokenizer = processors.substitutes(str(flux2), local_files_only=True)["tokenizer"]
    assert tokenizer.chat_template == template
    messages = [{"role": "user", "content": [{"type": "text", "text": "a cat"}]}]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == "[INST]a cat[/INST]"

    qwen = processors.substitutes(
        str(family_models / "tiny-qwen-image-edit-plus"), local_files_only=True
    )["processor"]
    inputs = qwen(text=["<|vision_start|><|image_pad|><|vision_end|> a cat"],
                  images=[Image.new("RGB", (64, 64))], return_tensors="pt")  # fmt: skip
    # 64² resized to its 56² patch grid at least (min_pixels): 4 x 4 patches merged 2x2.
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4]]
    assert (inputs["input_ids"] == qwen.image_token_id).sum() == 4
