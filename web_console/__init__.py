"""FastAPI app: pages, REST API, websockets, locally served static assets."""
