"""Tiny random-weight diffusers pipelines for offline demos, tests and benchmarks.

imagehub cannot reach a model hub, yet the generation engine must exercise the *real*
loading and inference path.  The builders below create miniature versions of two real
architectures (Stable Diffusion 1.x and FLUX.1-schnell) with random weights and locally
trained tokenizers, saved with ``save_pretrained`` so that
``DiffusionPipeline.from_pretrained(folder)`` loads them exactly like a downloaded
checkpoint.  Images are noise, by design.

Sizes are tuned so one 256x256 image at 4 steps costs ~0.1-0.4 s on a 2-core CPU:
cheap enough for tests, heavy enough that serving overhead is measured against a
non-trivial per-image cost.  Importable without Django.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import diffusers
import torch
import transformers
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

__all__ = ["DEMO_BUILDERS", "DEMO_STEPS", "build_flux_demo", "build_sd_demo", "is_built"]

# Called after each finished build step with its label (drives progress bars).
ProgressFn = Callable[[str], None]

# Step labels per demo, in build order, so callers can size a progress bar up front.
DEMO_STEPS: dict[str, tuple[str, ...]] = {
    "demo-sd": ("tokenizer", "text_encoder", "unet", "vae", "scheduler", "save"),
    "demo-flux": (
        "tokenizer",
        "text_encoder",
        "tokenizer_2",
        "text_encoder_2",
        "transformer",
        "vae",
        "scheduler",
        "save",
    ),
}

# Tokenizer training corpus.  Every word becomes a single token; other words split into
# a few learned sub-word pieces, so prompt-length accounting stays realistic.
_CORPUS_WORDS = """
a an the of on in at to for with without and or but by from into over under above below near behind
between through across around inside outside during before after while is are was be has have it its
this that these those some many few one two three four five six seven eight nine ten hundred
thousand i you he she we they my your his her our their me him them who what where when why how very
more most not no all each every other same different first last next photo photograph picture image
painting drawing sketch illustration render rendering art artwork poster portrait landscape
cityscape seascape closeup close up wide angle shot view scene background foreground composition
astronaut riding horse moon sun star stars planet space galaxy sky cloud clouds rain snow storm fog
mist wind cat cats dog dogs bird birds fish lion tiger bear wolf fox rabbit deer owl eagle dragon
unicorn robot monster man woman person people child children girl boy king queen knight wizard
warrior soldier pilot chef samurai city street road bridge building house castle tower temple church
village town market garden park alley forest tree trees flower flowers grass field mountain
mountains hill valley river lake ocean sea beach waves island desert jungle cave waterfall volcano
canyon glacier meadow countryside harbor lighthouse ship neon boat car train plane airplane bicycle
motorcycle rocket spaceship table chair window door room kitchen book lamp candle clock mirror sword
shield crown hat dress coat shoes glasses food fruit apple cake reflection coffee tea cup bottle
water fire ice stone wood metal glass gold silver crystal light shadow smoke reflections red orange
yellow green blue purple pink brown black white gray grey golden colorful vibrant pastel neon dark
bright soft warm cold hot old new young ancient modern futuristic retro vintage classic gothic
steampunk beautiful pretty cute lovely elegant majestic epic dramatic moody calm peaceful quiet
serene cozy cyberpunk magical mystical fantasy surreal dreamy abstract realistic photorealistic
hyperrealistic stylized minimalist highly detailed intricate sharp focus blurry bokeh depth
cinematic lighting volumetric studio natural ambient sunset sunrise golden hour night day morning
evening twilight midnight summer winter autumn spring oil watercolor acrylic pencil charcoal ink
digital concept anime manga cartoon comic pixel low poly sculpture style by trending artstation
unreal engine octane render 4k 8k hd uhd high quality resolution masterpiece big small large tiny
huge giant tall short long round square flying running walking sitting standing lit sleeping eating
reading playing dancing swimming looking smiling holding wearing made covered full glowing shining
floating burning falling wet dry empty crowded lonely happy sad angry scary funny
"""


def _corpus() -> list[str]:
    """Deterministic training text: the words in order plus comma-separated prompt-like lines."""
    words = _CORPUS_WORDS.split()
    lines = [" ".join(words[i : i + 9]) for i in range(0, len(words), 9)]
    return lines + [", ".join(words[i::7]) for i in range(7)]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable-character table, in CLIP's vocab order."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    extra = [b for b in range(256) if b not in bs]  # control/space bytes map to U+0100..
    chars = bs + [256 + i for i in range(len(extra))]
    return {b: chr(c) for b, c in zip(bs + extra, chars, strict=True)}


def _learn_bpe_merges(word_counts: Counter[str]) -> list[tuple[str, str]]:
    """Plain BPE learning until every corpus word is a single token.

    Done by hand rather than with ``tokenizers.trainers.BpeTrainer`` because that trainer
    breaks count ties in hash order, so its merge order (and thus the vocab ids) differs
    from run to run; here ties go to the lexicographically smallest pair.
    """
    # Symbols per word, the last one carrying CLIP's end-of-word marker.
    words = {(*w[:-1], w[-1] + "</w>"): n for w, n in word_counts.items() if w}
    merges: list[tuple[str, str]] = []
    while words := {s: n for s, n in words.items() if len(s) > 1}:
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, n in words.items():
            for pair in zip(symbols, symbols[1:], strict=False):
                pairs[pair] += n
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        words = {_apply_merge(s, best): n for s, n in words.items()}
    return merges


def _apply_merge(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out: list[str] = []
    i = 0
    while i < len(symbols):
        if symbols[i : i + 2] == pair:
            out.append(pair[0] + pair[1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


def _build_clip_tokenizer() -> CLIPTokenizer:
    """Byte-level BPE laid out like CLIP's vocab: 256 bytes, 256 ``byte</w>``, merges, then
    ``<|startoftext|>``/``<|endoftext|>`` last.  Every byte exists in both forms, so any
    unicode string tokenizes (as bytes) instead of collapsing to unk."""
    # Split the corpus with CLIPTokenizer's own normalizer/pre-tokenizer so merges match usage.
    backend = CLIPTokenizer().backend_tokenizer
    word_counts: Counter[str] = Counter()
    for line in _corpus():
        pieces = backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(line))
        word_counts.update(word for word, _span in pieces)
    merges = _learn_bpe_merges(word_counts)

    byte_chars = list(_bytes_to_unicode().values())
    vocab_list = byte_chars + [c + "</w>" for c in byte_chars]
    vocab_list += list(dict.fromkeys(a + b for a, b in merges))  # two merges may yield one token
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(vocab_list)}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def _build_t5_tokenizer(clip: CLIPTokenizer) -> T5Tokenizer:
    """SentencePiece-style Unigram tokenizer with T5's id layout (<pad>=0, </s>=1, <unk>=2).

    A Unigram trainer on a corpus this small keeps only whole words and single characters,
    so unseen words would cost one token per character.  Instead the pieces come from the
    sub-word inventory the CLIP BPE learned on the same corpus: corpus words score highest,
    fragments lower, characters lowest, so Viterbi prefers few, long pieces.  Characters
    outside the inventory map to <unk> (T5 has no byte fallback either).
    """
    byte_of = {c: b for b, c in _bytes_to_unicode().items()}
    words = set(_CORPUS_WORDS.split())
    scores: dict[str, float] = {}
    for token in sorted(clip.get_vocab()):  # get_vocab() order is arbitrary: sort, reproducibly
        try:
            piece = bytes(byte_of[c] for c in token.removesuffix("</w>")).decode("utf-8")
        except (KeyError, UnicodeDecodeError):  # special tokens, lone UTF-8 continuation bytes
            continue
        if not piece.isprintable() or piece.isspace():
            continue
        score = -6.0 if piece in words else -9.0 if len(piece) > 1 else -12.0
        # T5 is case-sensitive whereas CLIP lowercases, so also allow capitalised word starts.
        start, capital = "▁" + piece, "▁" + piece.capitalize()
        for candidate, s in ((start, score), (capital, score - 1.0), (piece, score - 0.5)):
            scores[candidate] = max(s, scores.get(candidate, s))
    for code in range(0xC0, 0x180):  # accented Latin letters as single-character fallbacks
        scores.setdefault(chr(code), -12.0)
    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -10.0)]
    vocab = specials + sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    # FLUX's tokenizer_2 accepts up to 512 tokens; 100 extra ids mirror T5's sentinel tokens.
    return T5Tokenizer(vocab=vocab, extra_ids=100, model_max_length=512)


def _clip_text_encoder(tokenizer: CLIPTokenizer, seed: int) -> CLIPTextModel:
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=32,
        hidden_act="quick_gelu",
        # Real ids (not the legacy eos=2 argmax trick) so pooling picks the end-of-text position.
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config).eval()


def _t5_text_encoder(tokenizer: T5Tokenizer, seed: int) -> T5EncoderModel:
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        feed_forward_proj="gated-gelu",  # T5 v1.1, as used by FLUX
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return T5EncoderModel(config).eval()


def _vae(seed: int, **config: object) -> AutoencoderKL:
    """Four down/up blocks -> vae_scale_factor 8, as in every real SD/FLUX VAE; tiny widths."""
    torch.manual_seed(seed)
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=256,
        **config,
    ).eval()


def _save(pipe: diffusers.DiffusionPipeline, path: Path) -> None:
    """save_pretrained without the libraries' per-shard progress bars (callers show their own)."""
    logs = [lib.utils.logging for lib in (transformers, diffusers)]
    was_on = [log.is_progress_bar_enabled() for log in logs]
    for log in logs:
        log.disable_progress_bar()
    try:
        pipe.save_pretrained(path, safe_serialization=True)
    finally:
        for log, on in zip(logs, was_on, strict=True):
            if on:
                log.enable_progress_bar()


def build_sd_demo(path: Path, *, seed: int = 0, progress: ProgressFn | None = None) -> None:
    """Write a tiny random StableDiffusionPipeline (SD 1.x layout) to ``path``."""
    step = progress or (lambda _label: None)
    tokenizer = _build_clip_tokenizer()
    step("tokenizer")
    text_encoder = _clip_text_encoder(tokenizer, seed)
    step("text_encoder")

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=64,  # default height/width = 64 * 8 = 512, as in SD 1.5
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64, 96),  # sized for ~0.2 s per 256px, 4-step image on 2 CPU cores
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=32,  # CLIP hidden size
        attention_head_dim=8,
    ).eval()
    step("unet")
    vae = _vae(seed, latent_channels=4, scaling_factor=0.18215)
    step("vae")

    # SD 1.5's training noise schedule; "trailing" spacing because demos run few steps.
    # steps_offset=1 is SD 1.5's value too; 0 makes the pipeline warn about an outdated config.
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="trailing",
    )
    step("scheduler")

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    _save(pipe, path)
    step("save")


def build_flux_demo(path: Path, *, seed: int = 0, progress: ProgressFn | None = None) -> None:
    """Write a tiny random FluxPipeline (FLUX.1-schnell layout: no guidance embeds) to ``path``."""
    step = progress or (lambda _label: None)
    tokenizer = _build_clip_tokenizer()
    step("tokenizer")
    text_encoder = _clip_text_encoder(tokenizer, seed)
    step("text_encoder")
    tokenizer_2 = _build_t5_tokenizer(tokenizer)
    step("tokenizer_2")

    text_encoder_2 = _t5_text_encoder(tokenizer_2, seed)
    step("text_encoder_2")

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,  # 16 latent channels packed into 2x2 patches
        num_layers=2,  # double-stream blocks; 1:2 ratio to single-stream as in FLUX
        num_single_layers=4,
        attention_head_dim=32,
        num_attention_heads=4,
        joint_attention_dim=32,  # T5 d_model
        pooled_projection_dim=32,  # CLIP hidden size (pooler_output)
        guidance_embeds=False,  # schnell is not guidance-distilled -> guidance_scale=0.0
        axes_dims_rope=(8, 12, 12),  # must sum to attention_head_dim
    ).eval()
    step("transformer")
    # FLUX VAE latent statistics (FluxPipeline requires shift_factor) and no quant convs.
    vae = _vae(
        seed,
        latent_channels=16,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    step("vae")

    # FLUX.1-schnell's scheduler_config.json.
    scheduler = FlowMatchEulerDiscreteScheduler(1000, shift=1.0, use_dynamic_shifting=False)
    step("scheduler")

    pipe = FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    _save(pipe, path)
    step("save")


DEMO_BUILDERS: dict[str, Callable[..., None]] = {
    "demo-sd": build_sd_demo,
    "demo-flux": build_flux_demo,
}


def is_built(path: Path | str) -> bool:
    """True when ``path`` holds a complete saved pipeline.

    Requires model_index.json and, for every non-null component, its folder with a JSON
    config, plus safetensors weights for neural-network components, so a half-written
    folder (e.g. an interrupted build) is not mistaken for a usable model.
    """
    root = Path(path)
    try:
        index = json.loads((root / "model_index.json").read_text())
    except (OSError, ValueError):
        return False
    components = {
        name: spec
        for name, spec in index.items()
        if not name.startswith("_") and isinstance(spec, list) and len(spec) == 2
    }
    if not components:
        return False
    for name, (library, class_name) in components.items():
        if library is None or class_name is None:
            continue  # optional component saved as None (safety_checker etc.)
        folder = root / name
        if not folder.is_dir() or not any(folder.glob("*.json")):
            return False
        has_weights = not ("Tokenizer" in class_name or "Scheduler" in class_name)
        if has_weights and not any(folder.glob("*.safetensors")):
            return False
    return True
