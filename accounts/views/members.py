"""The members page (list, invite, roles, removal) and the organization settings page.

The rules live in accounts.members; these views parse forms and render.
"""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts import members, selectors
from accounts.models import Membership
from accounts.views import org_page
from accounts.views.forms import InviteForm, ModerationForm, OrganizationForm, RoleForm


def _render_members(request, caller, *, invite_form=None, status=200):
    memberships = list(selectors.membership_list(organization=caller.organization))
    rows = [{"m": m, "manageable": members.can_manage(caller, m)} for m in memberships]
    is_manager = caller.role in selectors.MANAGER_ROLES
    roles = [
        (value, label)
        for value, label in Membership.Role.choices
        if caller.role == Membership.Role.OWNER or value != Membership.Role.OWNER
    ]
    return render(
        request,
        "accounts/members.html",
        {
            "caller": caller,
            "rows": rows,
            "is_manager": is_manager,
            "roles": roles,
            "invitations": members.invitation_list_pending(organization=caller.organization)
            if is_manager
            else [],
            "invite_form": invite_form or InviteForm(),
        },
        status=status,
    )


@org_page()
def member_list(request, caller):
    if request.method != "POST":
        return _render_members(request, caller)
    form = InviteForm(request.POST)
    if not form.is_valid():
        return _render_members(request, caller, invite_form=form, status=400)
    accept_url = request.build_absolute_uri(reverse("invitation-accept", args=["TOKEN"]))
    invitation, _ = members.invitation_create(
        caller=caller,
        email=form.cleaned_data["email"],
        role=form.cleaned_data["role"],
        accept_url=accept_url.replace("TOKEN", "{token}"),
    )
    messages.success(
        request, f"Invited {invitation.email} as {invitation.role}; the link works for 7 days."
    )
    return redirect("members")


@require_POST
@org_page(back="members")
def member_role(request, caller, pk: int):
    membership = members.membership_get(caller=caller, membership_id=pk)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a valid role.")
        return redirect("members")
    members.membership_change_role(
        caller=caller, membership=membership, role=form.cleaned_data["role"]
    )
    messages.success(request, f"{membership.user.email} is now {membership.role}.")
    return redirect("members")


@org_page(back="members")
def member_remove(request, caller, pk: int):
    """GET: the confirmation page, listing the keys the removal ends (an owner chooses to
    revoke them or take them over). POST: remove (or leave)."""
    membership = members.membership_get(caller=caller, membership_id=pk)
    leaving = membership.user_id == caller.user.pk
    if request.method != "POST":
        return render(
            request,
            "accounts/member_remove.html",
            {
                "caller": caller,
                "m": membership,
                "leaving": leaving,
                "keys": list(members.member_keys(membership=membership)),
                "can_transfer": caller.role == Membership.Role.OWNER and not leaving,
            },
        )
    entry = members.membership_remove(
        caller=caller, membership=membership, transfer_keys=request.POST.get("keys") == "transfer"
    )
    ended = len(entry.keys_revoked) + len(entry.keys_transferred)
    what = "transferred to you" if entry.keys_transferred else "revoked"
    keys_note = f" {ended} key{'s' if ended != 1 else ''} {what}." if ended else ""
    if leaving:
        request.session.pop(selectors.SESSION_ORG_KEY, None)
        messages.success(request, f"You left {caller.organization.name}.{keys_note}")
        return redirect("keys")
    messages.success(
        request,
        f"Removed {membership.user.email} from {caller.organization.name}.{keys_note}",
    )
    return redirect("members")


@require_POST
@org_page(back="members")
def invitation_revoke(request, caller, pk: int):
    invitation = members.invitation_revoke(caller=caller, invitation_id=pk)
    messages.success(request, f"Revoked the invitation of {invitation.email}.")
    return redirect("members")


@org_page(back="organization")
def organization_settings(request, caller):
    posted = request.POST if request.method == "POST" else None
    moderating = posted is not None and "moderation" in posted
    form = OrganizationForm(
        None if moderating else posted, initial={"name": caller.organization.name}
    )
    moderation = ModerationForm(
        posted if moderating else None, initial={"strict": caller.organization.moderation_strict}
    )
    if moderating and moderation.is_valid():
        members.organization_set_moderation(caller=caller, strict=moderation.cleaned_data["strict"])
        messages.success(request, "Saved the moderation setting.")
        return redirect("organization")
    if posted is not None and not moderating and form.is_valid():
        members.organization_rename(caller=caller, name=form.cleaned_data["name"])
        messages.success(request, "Saved.")
        return redirect("organization")
    return render(
        request,
        "accounts/organization.html",
        {
            "caller": caller,
            "form": form,
            "moderation_form": moderation,
            "is_owner": caller.role == Membership.Role.OWNER,
            "can_edit": caller.role in selectors.MANAGER_ROLES,
            "audit": selectors.audit_entry_list(organization=caller.organization)
            if caller.role in selectors.MANAGER_ROLES
            else [],
        },
    )
