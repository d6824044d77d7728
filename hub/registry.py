"""The explicit list of what a worker runs. Adding a connector means adding it here, nowhere else."""

from __future__ import annotations


def register_all(hub) -> None:
    from connectors.pagerduty.actions import PagerDutyConverger
    from connectors.pagerduty.client import PagerDutyEvents
    from connectors.slack.actions import SlackConverger
    from connectors.slack.client import SlackClient
    from hub.delivery.agents import register_retry_tiers, register_vendor
    from hub.delivery.gate import BlockStore
    from hub.processors import incidents, normalize, sales, support

    s = hub.settings
    ssl_context = None
    if s.tls_ca_file is not None:
        import ssl

        ssl_context = ssl.create_default_context(cafile=str(s.tls_ca_file))
    # inbound
    normalize.register(hub)
    # processors
    incidents.register(hub)
    if s.support.enabled:
        normalize.register_zendesk(hub)
        support.register(hub)
    if s.sales.enabled:  # needs the support key side (check-config says so)
        normalize.register_salesforce(hub)
        sales.register(hub)
    # outbound: clients are created here but connect lazily, on the first call; they are created in dry
    # run too whenever credentials are set, so that dry run can be switched off live (hub/reload.py)
    slack_client = None
    if s.slack.bot_token is not None:
        slack_client = SlackClient(s.slack.bot_token.get_secret_value(), base_url=s.slack.base_url, timeout_s=s.delivery.request_timeout_s, ssl_context=ssl_context)
        hub.closers.append(slack_client.close)
    register_vendor(hub, vendor="slack", topic="actions.slack", converger=SlackConverger(slack_client, dry_run=s.slack.dry_run, concurrency=s.delivery.target_concurrency,
                                                                              gate_store=BlockStore(s.data_dir / "gates" / "slack.json")))
    pd_events = None
    if s.pagerduty.services or not s.pagerduty.dry_run:
        pd_events = PagerDutyEvents({name: key.get_secret_value() for name, key in s.pagerduty.services.items()},
                                    base_url=s.pagerduty.events_url, timeout_s=s.delivery.request_timeout_s,
                                    ssl_context=ssl_context)
        hub.closers.append(pd_events.close)
    register_vendor(hub, vendor="pagerduty", topic="actions.pagerduty", converger=PagerDutyConverger(pd_events, dry_run=s.pagerduty.dry_run, concurrency=s.delivery.target_concurrency,
                                                                                      gate_store=BlockStore(s.data_dir / "gates" / "pagerduty.json")))
    if s.support.enabled:
        from connectors.jira.actions import JiraConverger
        from connectors.zendesk.actions import ZendeskConverger

        jira_client = None
        if s.jira.site_url and s.jira.email and s.jira.api_token:
            from connectors.jira.client import JiraClient

            jira_client = JiraClient(s.jira.site_url, s.jira.email, s.jira.api_token.get_secret_value(),
                                     timeout_s=s.delivery.request_timeout_s, ssl_context=ssl_context)
            hub.closers.append(jira_client.close)
        register_vendor(hub, vendor="jira", topic="actions.jira", converger=JiraConverger(
            jira_client, ticket_count_field=s.support.jira_ticket_count_field_id,
            organization_count_field=s.support.jira_organization_count_field_id, dry_run=s.support.dry_run,
            revenue_fields={"amount": s.sales.jira_open_amount_field_id, "weighted": s.sales.jira_weighted_amount_field_id,
                            "count": s.sales.jira_opportunity_count_field_id, "close_date": s.sales.jira_close_date_field_id}))
        zendesk_client = None
        if s.zendesk.configured:
            from connectors.zendesk.client import ZendeskClient

            zendesk_client = ZendeskClient.from_settings(s.zendesk, ssl_ca_file=s.tls_ca_file)
        register_vendor(hub, vendor="zendesk", topic="actions.zendesk", converger=ZendeskConverger(zendesk_client, dry_run=s.support.dry_run))
    if s.sales.enabled:
        from connectors.salesforce.actions import SalesforceConverger

        sf_client = None
        if s.salesforce.configured:
            from connectors.salesforce.client import SalesforceClient

            sf_client = SalesforceClient.from_settings(s.salesforce, ssl_ca_file=str(s.tls_ca_file) if s.tls_ca_file else None)
        register_vendor(hub, vendor="salesforce", topic="actions.salesforce", converger=SalesforceConverger(sf_client, dry_run=s.sales.dry_run,
                                                                                                      notice=s.sales.owner_notice))
    register_retry_tiers(hub)
