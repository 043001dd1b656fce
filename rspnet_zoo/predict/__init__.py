"""Inference on image files: masks, overlays and legends (``infer``, ``legend``)."""
