"""The Kubernetes backend (``CLOCHE_BACKEND=kubernetes``): a pod per sandbox running the node agent.

``objects.py`` the manifests of one sandbox node (pure), ``kube.py`` the Kubernetes API through the official client,
``nodes.py`` making, resuming, scaling down and removing nodes, ``pod_agent.py`` the node agent protocol for one
node. Imported only when the backend is chosen: the ``kubernetes`` client is an optional extra.
"""
