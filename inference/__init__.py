"""Model bundles, the architecture registry and the inference engine (torch imported lazily, no Qt)."""
