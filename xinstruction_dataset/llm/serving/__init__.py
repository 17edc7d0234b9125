"""Managed inference servers: a model entry's `serve:` block (config.py) makes the toolkit start,
health-check, restart and stop the servers itself, and publish their endpoints
(llm/endpoints.py: `PublishedEndpoints`)."""
