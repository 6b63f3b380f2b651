"""Tools beside the gateway: benchmarks, evaluation reports, screenshots, and the launcher
that starts ``gateway serve`` for them and for the integration tests.

Not part of the product: ``gateway`` never imports this package, and installing the server
(``pip install .[cpu]``) does not bring it or its dependencies.
"""
