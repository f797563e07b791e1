"""Node.js: CommonJS and ES modules run with the host's node inside the jail."""
