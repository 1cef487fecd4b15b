"""The REST API: the FastAPI app, its routes, schemas and error mapping, and the uvicorn server."""
