"""The Adapters page: the organization's LoRA adapters and the operator's shared ones
(name, base model, size, rank, last use), an upload form with a progress bar (the
upload is an XMLHttpRequest from adapters.js; without JavaScript the form posts as
usual), and delete. Every member of the organization may upload and delete, as a
'manage' key may."""

from __future__ import annotations

from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.views import org_page
from generations.adapters import selectors
from generations.adapters.services import adapter_create, adapter_delete
from generations.catalog import all_models
from imagehub.errors import InvalidRequest, NotFound


def _wants_json(request) -> bool:
    return request.headers.get("X-Requested-With") == "XMLHttpRequest"


def _render(request, caller, *, status=200, error=None, form=None):
    return render(
        request,
        "generations/adapters.html",
        {
            "caller": caller,
            "adapters": selectors.adapter_list(organization=caller.organization),
            "models": [spec.id for spec in all_models()],
            "error": error,
            "form": form or {},
        },
        status=status,
    )


@org_page(back="adapters")
def adapter_page(request, caller):
    if request.method != "POST":
        return _render(request, caller)
    form = {"name": request.POST.get("name", ""), "base_model": request.POST.get("base_model")}
    try:
        upload = request.FILES.get("file")
        if upload is None:
            raise InvalidRequest("Choose a .safetensors file to upload.", param="file")
        adapter = adapter_create(
            organization=caller.organization,
            user=caller.user,
            name=form["name"],
            base_model=form["base_model"] or "",
            upload=upload,
        )
    except InvalidRequest as exc:
        if _wants_json(request):
            return JsonResponse({"error": {"message": exc.message, "param": exc.param}}, status=400)
        return _render(request, caller, status=400, error=exc, form=form)
    message = f"Uploaded {adapter.name} ({adapter.pk}) for {adapter.base_model}."
    messages.success(request, message)
    if _wants_json(request):
        return JsonResponse({"id": adapter.pk, "message": message}, status=201)
    return redirect("adapters")


@require_POST
@org_page(back="adapters")
def adapter_delete_page(request, caller, pk: str):
    adapter = selectors.adapter_get_visible(organization=caller.organization, adapter_id=pk)
    if adapter is None:
        raise NotFound(f"No adapter with id '{pk}'.")
    adapter_delete(adapter=adapter, organization=caller.organization)
    messages.success(request, f"Deleted {adapter.name}.")
    return redirect("adapters")
