"""Webhooks: an organization's endpoint and signing secrets, and the outbox that delivers
what generations report (the generation events themselves are generations/webhooks.py's).

- models.py     WebhookEndpoint (default URL, events, secrets) and WebhookDelivery (outbox)
- events.py     the event names
- endpoints.py  endpoint settings, secret rotation, where a generation's events go
- signing.py    Standard Webhooks signatures
- http.py       the outbound POST, with its SSRF guard on every address
- delivery.py   the outbox: enqueue, claim, attempt, backoff, redeliver, purge, Sender

The REST endpoints are accounts/api/webhooks.py, the page accounts/views/webhooks.py.
"""
