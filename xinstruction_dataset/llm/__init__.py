"""The LLM client: backends (one per kind of server), the call runner that schedules them, and the durable call cache."""
