"""The Kubernetes backend (``CLOCHE_BACKEND=kubernetes``): a pod per sandbox running the node agent.

``objects.py`` holds the manifests of one sandbox node (pure). The ``kubernetes`` client is an optional extra.
"""
