"""The FastAPI application: routers, one error handler, the lifespan that runs the loops."""
