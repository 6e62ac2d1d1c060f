"""extpack: bake AWS Lambda layers and extensions into container images."""

__version__ = "0.1.0"
