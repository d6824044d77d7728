"""Salesforce: the SOQL catch-up poller and Change Data Capture events in, a simple-salesforce client,
and the pure mapping to ``schemas/sales_event.v1.json`` (opportunities and feature requests linked
to Jira issues).

Same files as every vendor package: ``settings``, ``events``, ``mapping``, ``client``, ``poller``
(no ``signature``: CDC arrives over the authenticated Pub/Sub or Streaming API, not as a signed
webhook). Nothing here runs on import.
"""
