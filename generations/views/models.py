"""The models page: what each model of the catalog does, for the people choosing one."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from generations.availability import unavailable_reasons
from generations.catalog import ModelSpec, all_models, families


@dataclass(frozen=True)
class ModelRow:
    spec: ModelSpec
    capabilities: list[str]
    unavailable: str | None


@login_required
def model_catalog(request):
    unavailable = unavailable_reasons()
    rows = [
        ModelRow(
            spec=spec,
            capabilities=[families.CAPABILITY_LABELS[c] for c in spec.model_capabilities],
            unavailable=unavailable.get(spec.id),
        )
        for spec in all_models()
    ]
    return render(request, "generations/models.html", {"rows": rows})
