"""The organization endpoints: /v1/organization and /v1/organization/members."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from accounts import selectors
from accounts.api.base import ERRORS, ManagementView
from accounts.api.serializers import MemberListSerializer, MemberSerializer, OrganizationSerializer


class OrganizationView(ManagementView):
    @extend_schema(
        summary="Your organization",
        operation_id="retrieve_organization",
        responses={200: OrganizationSerializer, **ERRORS},
        tags=["organization"],
    )
    def get(self, request):
        org = self.caller.organization
        return Response(OrganizationSerializer(org, context={"role": self.caller.role}).data)


class MemberListView(ManagementView):
    @extend_schema(
        summary="Members of your organization",
        operation_id="list_organization_members",
        responses={200: MemberListSerializer, **ERRORS},
        tags=["organization"],
    )
    def get(self, request):
        members = selectors.membership_list(organization=self.caller.organization)
        return Response({"object": "list", "data": MemberSerializer(members, many=True).data})
