"""Pod sandboxes: records, namespaces, pod files and the validation of their requests."""
