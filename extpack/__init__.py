"""extpack: bake AWS Lambda layers and extensions into container images."""


def __getattr__(name: str) -> str:
    # The version is worked out on first use (PEP 562), so start-up does not pay for it.
    if name == "__version__":
        from extpack.version import package_version

        return package_version()
    raise AttributeError(f"module 'extpack' has no attribute {name!r}")
