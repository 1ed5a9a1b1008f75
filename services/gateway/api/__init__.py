"""The HTTP transport: FastAPI routes, dependencies, exception handlers and middleware."""
