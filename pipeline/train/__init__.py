"""Training: driver side (``job``, ``launcher``) apart from worker side (``worker``, ``model``)."""
