"""Zendesk Support: signed webhooks in (event-style and trigger-style), a zenpy client, the
incremental-export poller, and the pure mapping to ``schemas/support_event.v1.json``.

Same files as every vendor package: ``settings``, ``signature``, ``events``, ``mapping``,
``client``, ``poller``. Nothing here runs on import.
"""
