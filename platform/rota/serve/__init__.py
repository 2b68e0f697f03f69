"""The only package that talks to Ray: the cluster, the Serve REST API, application scripts.

The rest of Rota sees ``RayServe`` (observe / apply) and ``inspect_app``.
"""
