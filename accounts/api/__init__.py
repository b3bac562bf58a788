"""The REST API of accounts, on the domain modules of accounts/:

- authentication.py  bearer keys (and their OpenAPI scheme), the permissions of the APIs
- base.py            ManagementView: who may call the management API, and its errors
- keys.py            /v1/keys
- organization.py    /v1/organization, /v1/organization/members
- webhooks.py        /v1/webhook, its secret rotation, deliveries and redelivery
- usage.py           /v1/credits, /v1/usage
- serializers.py     request validation and response shapes
- urls.py            the routes (included by imagehub/urls.py)
"""
