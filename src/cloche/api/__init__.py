"""HTTP faces: the FastAPI app factory and thin routes."""
