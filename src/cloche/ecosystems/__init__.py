"""One folder per language, each filling the Ecosystem protocol."""
