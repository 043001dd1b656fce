"""Other systems' formats: published genotype encodings in (``importers``), published checkpoints converted by
declarative layouts (``conversions``, ``convert``), and ONNX out (``export``)."""
