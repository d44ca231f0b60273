"""Image storage: blob verification, layer decompression and layer unpacking onto disk."""
