"""The cloche command line."""
