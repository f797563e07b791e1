"""Node.js: CommonJS and ES modules; npm installs into a shared, read-only node_modules."""
