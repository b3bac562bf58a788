"""LoRA adapters: an organization's own (or the operator's shared) low-rank weights for a
catalog model, uploaded once and applied per request with ``loras: [{id, scale}]``.

- models.py       the Adapter row and the operator's surcharges (AdapterPrice)
- lora_files.py   what a ``.safetensors`` LoRA holds, read from its header (never a pickle)
- base_modules.py the base model's denoiser and text-encoder modules, read from its weight
                  files' headers, and the check that an adapter's tensors fit them
- services.py     upload (validate, then store), delete, last use
- selectors.py    who sees which adapter (another organization's is a 404 everywhere)
- pricing.py      the per-image surcharge of the adapters of a request
- requests.py     the ``loras`` field of a generation request, resolved and checked

The worker fetches an adapter's file (generations/worker/adapters.py) and the engine
applies it on the cached base pipeline (generations/engine/adapters.py).
"""
