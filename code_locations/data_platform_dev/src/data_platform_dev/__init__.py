"""Dev tooling of the data platform: what runs on a laptop or in tests, never in an image.

``stack`` supervises the local stack (``make dev``/``demo``/``stop``), ``journal_api`` is the
synthetic upstream, ``testing`` the pytest fixtures, ``releases`` renders and deploys the Helm
releases. Code locations never import this package.
"""
