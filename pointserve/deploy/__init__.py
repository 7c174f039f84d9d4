"""Running pointserve's models elsewhere: a Triton model repository (:mod:`pointserve.deploy.triton`), and the same
app and batcher as Ray Serve replicas (:mod:`pointserve.deploy.ray_serve`; Ray is imported only when it runs)."""
