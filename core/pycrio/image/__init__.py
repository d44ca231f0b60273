"""Image service: references, registries.conf, signature policy, registry client."""
