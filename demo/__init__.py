"""The demo task's data generator: development code beside the pipeline, not part of the shipped package."""
