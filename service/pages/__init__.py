"""The pages, one module per area (service/web.py combines their routers into one)."""
