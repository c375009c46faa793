"""Data only: window presets, icons, style and the default model bundles."""
