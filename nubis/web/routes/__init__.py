"""The console's pages, one module per area, like the API's routes."""
