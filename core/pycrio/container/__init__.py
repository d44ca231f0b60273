"""Containers: records and the OCI runtime spec built from the CRI and image configs."""
