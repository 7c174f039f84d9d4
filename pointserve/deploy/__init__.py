"""Running pointserve's models elsewhere: a Triton model repository (:mod:`pointserve.deploy.triton`)."""
