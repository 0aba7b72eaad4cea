"""Input and output formats: manifests, usage importers, scheduler exporters."""
