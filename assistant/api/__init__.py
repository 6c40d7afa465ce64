"""The HTTP API (`assistant serve`): the assistant as an OpenAI-compatible model, plus search, documents
and ingest routes. `app.create_app(settings)` builds the FastAPI application; `cli` registers the
subcommand."""
