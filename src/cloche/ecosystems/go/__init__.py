"""Go: modules resolved with go mod tidy, a precompiled environment, builds in the exec jail."""
