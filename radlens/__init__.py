"""RadLens: the entry point that ties the imaging, inference, training and viewer packages together."""

__version__ = "0.1.0"
