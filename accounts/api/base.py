"""What every management endpoint shares: who may call it (a signed-in session, with
DRF's CSRF check, or a ``manage``-scoped bearer key), the caller it acts for, and the
errors it documents. Every lookup is scoped to the caller's organization.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse
from rest_framework.authentication import SessionAuthentication
from rest_framework.views import APIView

from accounts import selectors
from accounts.api.authentication import BearerKeyAuthentication, HasManageAccess

ERRORS = {
    400: OpenApiResponse(description="Invalid input; `error.param` names the field."),
    401: OpenApiResponse(description="Missing, invalid, revoked, expired or rotated key."),
    403: OpenApiResponse(description="A 'generate' key, or a role that may not do this."),
}


class ManagementView(APIView):
    authentication_classes = [BearerKeyAuthentication, SessionAuthentication]
    permission_classes = [HasManageAccess]
    caller: selectors.Caller

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.caller = selectors.caller_for_request(request)

    def get_key(self, key_id: int):
        return selectors.api_key_get(caller=self.caller, key_id=key_id)
