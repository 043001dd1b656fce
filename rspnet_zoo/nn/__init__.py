"""The torch layer: the ops table's module factories (``ops``), decoders (``heads``), the builder that walks a
lowered spec into a ``GenotypeNet`` (``model``) and the inference fold (``fold``). It never imports the zoo."""
