"""What the Linux kernel offers that Python's os module lacks: mountinfo, libc calls, processes.

One module per concern so that every caller parses, calls and identifies the
same way. Plugins may use these helpers as they use :mod:`pycrio.errors`.
"""
