"""LLM access: one small interface, one class per kind of server."""
